using System;
using System.Linq;
using System.Text;

namespace VmCheckpoint.Core.Hypervisors
{
    /// <summary>
    /// What a VM's name may be. It is stored in manifests, indexed by the catalog (LiteDB keys are under 1023 bytes),
    /// and hypervisors keep a file named after it (libvirt's NAME.xml), so its length is checked before anything is written.
    /// </summary>
    public static class VmNames
    {
        /// <summary>The longest name in UTF-8 bytes: a file name on every system, with room for an extension.</summary>
        public const int MaxUtf8Bytes = 200;

        /// <summary>Why <paramref name="name"/> cannot be a VM's name, or null when it can.</summary>
        public static string? Problem(string? name)
        {
            if (name is null || name.Trim().Length == 0) return "a VM name cannot be empty";
            int bytes = Encoding.UTF8.GetByteCount(name);
            if (bytes > MaxUtf8Bytes) return $"it is {bytes} bytes long in UTF-8; at most {MaxUtf8Bytes} are allowed";
            // Any other character is fine: the repository names a VM's folder by a hash of its name.
            if (name!.Any(char.IsControl)) return "a VM name cannot hold control characters (line breaks, tabs)";
            return null;
        }

        /// <summary>Throws ArgumentException when the name cannot be a VM's name.</summary>
        public static void Validate(string? name)
        {
            string? problem = Problem(name);
            if (problem != null)
            {
                string shown = name is null ? "" : name.Length <= 60 ? name : name.Substring(0, 40) + "…" + name.Substring(name.Length - 10);
                throw new ArgumentException($"'{shown}' is not a usable VM name: {problem}. Give the checkpoint another name with -Name.", "name");
            }
        }
    }
}
