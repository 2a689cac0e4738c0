using System;
using System.IO;

namespace VmCheckpoint.Core.Repository
{
    /// <summary>
    /// Files of the repository are never rewritten in place: they are written under a temporary name,
    /// flushed to stable storage, then renamed. A reader sees the whole file or none of it, on a local
    /// disk as on an SMB or NFS share.
    /// </summary>
    internal static class AtomicFile
    {
        public const string TemporarySuffix = ".tmp";

        public static string TemporaryNameFor(string path) => $"{path}.{Hex.Random(6)}{TemporarySuffix}";

        public static void Write(string path, byte[] content) => Write(path, s => s.Write(content, 0, content.Length));

        public static void Write(string path, Action<FileStream> write)
        {
            var temporary = TemporaryNameFor(path);
            try
            {
                using (var stream = new FileStream(temporary, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16))
                {
                    write(stream);
                    stream.Flush(flushToDisk: true);
                }
                Commit(temporary, path);
            }
            catch
            {
                TryDelete(temporary);
                throw;
            }
        }

        /// <summary>Renames a flushed temporary file to its final name; an existing file of that name is an error.</summary>
        public static void Commit(string temporary, string path)
        {
            File.Move(temporary, path);
        }

        public static void TryDelete(string path)
        {
            try { File.Delete(path); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        }
    }
}
