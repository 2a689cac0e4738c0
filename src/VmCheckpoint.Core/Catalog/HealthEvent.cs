using System;
using LiteDB;

namespace VmCheckpoint.Core.Catalog
{
    public enum HealthEventKind
    {
        /// <summary>A VM found in need of help (crashed, paused on an I/O error, its host unreachable).</summary>
        Detected,
        /// <summary>Something was done about it: a restart or a restore; Result says how it went.</summary>
        Action,
        /// <summary>Waiting out the back-off before the next attempt.</summary>
        Waiting,
        /// <summary>-MaxAttempts reached: nothing more is done until an administrator steps in.</summary>
        GaveUp,
    }

    /// <summary>One line of the health log: a detection or an action of the watcher.</summary>
    public sealed class HealthEvent
    {
        /// <summary>A time-ordered id (24 hex digits), a plain string in every output and export.</summary>
        public string? Id { get; set; }
        public DateTime Time { get; set; } = DateTime.UtcNow;
        public string VmName { get; set; } = "";
        public string Host { get; set; } = "";
        /// <summary>Detected, Action, Waiting or GaveUp.</summary>
        public string Kind { get => EventKind.ToString(); set => EventKind = Reporting.EnumText.Parse<HealthEventKind>(value); }
        internal HealthEventKind EventKind { get; set; }
        /// <summary>What the VM was found in (Crashed, PausedOnError, ...).</summary>
        public string Condition { get; set; } = "";
        /// <summary>Restart, RestoreLatest or RestoreElsewhere, for actions.</summary>
        public string? Action { get; set; }
        public int Attempt { get; set; }
        /// <summary>How an action went (Succeeded, Failed...); empty for detections.</summary>
        public string? Result { get => Outcome?.ToString(); set => Outcome = Reporting.EnumText.ParseOptional<JobResult>(value); }
        internal JobResult? Outcome { get; set; }
        public string? CheckpointId { get; set; }
        /// <summary>From detection to the VM running again, for successful actions.</summary>
        public double? RecoverySeconds { get; set; }
        public string Message { get; set; } = "";

        public override string ToString() => $"{Time:u} {VmName} {Kind} {Action} {Result} {Message}";
    }
}
