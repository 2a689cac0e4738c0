using System;
using System.IO;
using System.Linq;
using System.Text;

namespace VmCheckpoint.Core.Disks
{
    /// <summary>
    /// What a disk's name may be. The name becomes a file name on restore (name + extension + a temporary suffix of
    /// 23 characters), on Linux and on Windows alike, so every name that is checkpointed can be restored anywhere.
    /// </summary>
    public static class DiskNames
    {
        /// <summary>
        /// The longest name in UTF-8 bytes: 255 (the file-name limit of ext4, XFS, NTFS) less ".avhdx" and the
        /// temporary ".partial-xxxxxxxx" a restore writes first, with room to spare.
        /// </summary>
        public const int MaxUtf8Bytes = 200;

        private static readonly char[] Forbidden = { '/', '\\', ':', '\0', '<', '>', '"', '|', '?', '*' };

        private static readonly string[] WindowsDeviceNames =
        {
            "CON", "PRN", "AUX", "NUL", "COM1", "COM2", "COM3", "COM4", "COM5", "COM6", "COM7", "COM8", "COM9",
            "LPT1", "LPT2", "LPT3", "LPT4", "LPT5", "LPT6", "LPT7", "LPT8", "LPT9",
        };

        /// <summary>Why <paramref name="name"/> cannot be a disk name, or null when it can.</summary>
        public static string? Problem(string? name)
        {
            if (name is null || name.Length == 0) return "a disk name cannot be empty";
            if (name == "." || name == "..") return $"'{name}' cannot be a file name";
            int bytes = Encoding.UTF8.GetByteCount(name);
            if (bytes > MaxUtf8Bytes) return $"the name is {bytes} bytes long in UTF-8; at most {MaxUtf8Bytes} restore as a file on every system";
            if (name.IndexOfAny(Forbidden) >= 0 || name.Any(char.IsControl))
                return "a disk name cannot hold / \\ : < > \" | ? * or control characters (they cannot be in a Windows or Linux file name)";
            if (name.EndsWith(".", StringComparison.Ordinal) || name.EndsWith(" ", StringComparison.Ordinal))
                return "a disk name cannot end in a dot or a space (Windows drops them from file names)";
            string stem = name.Split('.')[0].TrimEnd(' ');
            if (WindowsDeviceNames.Contains(stem, StringComparer.OrdinalIgnoreCase))
                return $"'{stem}' is a device name on Windows, not a file name";
            return null;
        }

        /// <summary>Throws InvalidDataException naming <paramref name="source"/> when the name cannot be a disk name.</summary>
        public static void Validate(string name, string source)
        {
            string? problem = Problem(name);
            if (problem != null)
                throw new InvalidDataException($"{source}: '{Shorten(name)}' is not a usable disk name: {problem}. Rename the file, or give the disk another name.");
        }

        /// <summary>
        /// The check for a name read back from a stored checkpoint: only that it stays one file name inside the restore
        /// folder. Names stored by older versions under looser rules still restore.
        /// </summary>
        public static void ValidateStored(string name, string source)
        {
            if (string.IsNullOrEmpty(name) || name == "." || name == ".." || Encoding.UTF8.GetByteCount(name) > 250 ||
                name.IndexOfAny(new[] { '/', '\\', ':', '\0' }) >= 0 || name.Any(char.IsControl))
                throw new InvalidDataException($"{source}: '{Shorten(name)}' is not a usable disk name.");
        }

        /// <summary>A name short enough to quote in a message.</summary>
        internal static string Shorten(string? name) =>
            name is null ? "" : name.Length <= 60 ? name : name.Substring(0, 40) + "…" + name.Substring(name.Length - 10);
    }
}
