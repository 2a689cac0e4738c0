using System.IO;

namespace VmCheckpoint.Core.Repository.Backends
{
    /// <summary>Whole and exact reads, built on any backend's ranged reads.</summary>
    internal static class ObjectReads
    {
        /// <summary>An object's bytes; <see cref="ObjectNotFoundException"/> when there is no such object.</summary>
        public static byte[] ReadAll(this IRepositoryBackend backend, string name)
        {
            using var reader = backend.OpenRead(name);
            if (reader.Length > int.MaxValue) throw new IOException($"{backend.Locate(name)}: {reader.Length} bytes is too large to read whole.");
            var content = new byte[reader.Length];
            int n = reader.ReadAt(0, content, 0, content.Length);
            if (n != content.Length) throw new IOException($"{backend.Locate(name)}: read {n} of its {content.Length} bytes.");
            return content;
        }

        /// <summary>Reads exactly <paramref name="count"/> bytes at <paramref name="offset"/>; fewer is damage (<see cref="InvalidDataException"/>).</summary>
        public static void ReadExactly(this IObjectReader reader, long offset, byte[] buffer, int count, string source)
        {
            if (reader.ReadAt(offset, buffer, 0, count) != count) throw new InvalidDataException($"{source}: file ends early.");
        }
    }
}
