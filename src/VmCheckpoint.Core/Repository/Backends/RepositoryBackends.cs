namespace VmCheckpoint.Core.Repository.Backends
{
    /// <summary>
    /// The one place a repository's location becomes a backend: <c>s3://bucket/prefix</c> is an S3 bucket
    /// (<see cref="S3Backend"/>), anything else a folder or a mounted share (<see cref="LocalFolderBackend"/>).
    /// </summary>
    internal static class RepositoryBackends
    {
        /// <summary>True for a location that is an address rather than a file-system path (no path resolution applies).</summary>
        public static bool IsAddress(string? location) => S3Location.IsS3(location);

        /// <summary>The backend of a location; an S3 address that breaks S3's rules throws <see cref="System.ArgumentException"/>.</summary>
        public static IRepositoryBackend For(string location) =>
            S3Location.IsS3(location) ? S3Backend.Connect(S3Location.Parse(location)) : new LocalFolderBackend(location);
    }
}
