using VmCheckpoint.Core.Repository;
using VmCheckpoint.Core.Repository.Backends;
using VmCheckpoint.Core.Tests.Repository.Backends;

namespace VmCheckpoint.Core.Tests.Repository;

/// <summary>
/// Where a test repository's objects are as files. The repository itself speaks object names only; tests that damage,
/// plant or count files reach them through these paths (the repository's folder, under any fault injector).
/// </summary>
internal static class RepositoryFolderPaths
{
    public static LocalFolderBackend Folder(this IRepositoryBackend backend) => backend switch
    {
        LocalFolderBackend local => local,
        FaultInjectingBackend faulty => faulty.Inner,
        _ => throw new InvalidOperationException($"{backend.GetType().Name} is not a folder."),
    };

    extension(RepositoryLayout layout)
    {
        public string PacksDirectory => Folder(layout.Backend).PathOf("packs");
        public string IndexDirectory => Folder(layout.Backend).PathOf("index");
        public string CheckpointsDirectory => Folder(layout.Backend).PathOf("checkpoints");
        public string LocksDirectory => Folder(layout.Backend).PathOf("locks");
        public string ConfigPath => Folder(layout.Backend).PathOf(RepositoryLayout.ConfigName);

        public string VmDirectory(string vmName) => Folder(layout.Backend).PathOf(layout.VmPrefix(vmName).TrimEnd('/'));
        public string LockPath(string id) => Folder(layout.Backend).PathOf(layout.LockName(id));
        public string PackPath(string id) => Folder(layout.Backend).PathOf(layout.PackName(id));
        public string IndexPath(string id) => Folder(layout.Backend).PathOf(layout.IndexName(id));
    }
}
