using System;
using System.Collections.Generic;
using System.IO;
using System.Runtime.InteropServices;

namespace VmCheckpoint.Core.Disks
{
    /// <summary>
    /// The files opened so far along one backing chain, so that a loop (a → b → a) or an absurdly
    /// deep chain is refused instead of recursing until the stack or the file handles run out.
    /// </summary>
    internal sealed class BackingChain
    {
        internal const int MaxDepth = 32;

        private static readonly StringComparer PathComparer =
            RuntimeInformation.IsOSPlatform(OSPlatform.Windows) ? StringComparer.OrdinalIgnoreCase : StringComparer.Ordinal;

        private readonly HashSet<string> _visited = new HashSet<string>(PathComparer);

        /// <summary>Records <paramref name="path"/> as the next link; <paramref name="child"/> is the image naming it.</summary>
        public void Enter(string path, string? child)
        {
            string canonical = Path.GetFullPath(path);
            if (!_visited.Add(canonical))
            {
                throw new CorruptImageException(child ?? path, $"backing chain loops back to '{canonical}'");
            }

            if (_visited.Count > MaxDepth)
            {
                throw new CorruptImageException(child ?? path, $"backing chain is deeper than {MaxDepth} images");
            }
        }
    }
}
