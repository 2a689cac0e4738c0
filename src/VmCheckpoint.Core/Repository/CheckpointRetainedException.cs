using System;

namespace VmCheckpoint.Core.Repository
{
    /// <summary>A checkpoint whose manifest the store keeps from deletion (S3 Object Lock) until a date not yet reached.</summary>
    public sealed class CheckpointRetainedException : InvalidOperationException
    {
        public CheckpointRetainedException(string message, string checkpointId) : base(message)
        {
            CheckpointId = checkpointId;
        }

        public string CheckpointId { get; }
    }
}
