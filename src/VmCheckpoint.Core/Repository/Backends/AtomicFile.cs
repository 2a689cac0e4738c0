using System;
using System.IO;

// In the repository's namespace rather than Backends': restores (Jobs) remove their own temporary files with it too.
namespace VmCheckpoint.Core.Repository
{
    /// <summary>
    /// Local files that are never rewritten in place: written under a temporary name, flushed to stable storage, then
    /// renamed to a name not taken. A reader sees the whole file or none of it, on a local disk as on an SMB or NFS
    /// share. <see cref="Backends.LocalFolderBackend"/> writes every object so.
    /// </summary>
    internal static class AtomicFile
    {
        public const string TemporarySuffix = ".tmp";

        public static string TemporaryNameFor(string path) => $"{path}.{Hex.Random(6)}{TemporarySuffix}";

        public static bool IsTemporary(string path) => path.EndsWith(TemporarySuffix, StringComparison.Ordinal);

        /// <summary>Creates a new temporary file beside <paramref name="path"/>, making its folder if needed.</summary>
        public static FileStream CreateTemporary(string path, out string temporary)
        {
            temporary = TemporaryNameFor(path);
            try
            {
                return Create(temporary);
            }
            catch (DirectoryNotFoundException)
            {
                // The first object of a folder (a new VM's checkpoints, a new pack prefix): one mkdir, then the file.
                Directory.CreateDirectory(Path.GetDirectoryName(path)!);
                return Create(temporary);
            }
        }

        private static FileStream Create(string temporary) =>
            new FileStream(temporary, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16);

        /// <summary>
        /// Flushes a temporary file to stable storage, closes it and renames it to <paramref name="path"/>; a file of
        /// that name already there is an error (<see cref="IOException"/>), and is left as it was.
        /// </summary>
        public static void Commit(FileStream stream, string temporary, string path)
        {
            stream.Flush(flushToDisk: true);
            stream.Dispose();
            File.Move(temporary, path);
        }

        public static void TryDelete(string path)
        {
            try { File.Delete(path); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        }
    }
}
