using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Runtime.InteropServices;
using System.Text;

namespace VmCheckpoint.Core.Disks
{
    /// <summary>A process that has a file open: a running VM's qemu names the VM.</summary>
    public sealed class FileUser
    {
        public FileUser(int processId, string program, string? vmName, bool writing)
        {
            ProcessId = processId;
            Program = program;
            VmName = vmName;
            Writing = writing;
        }

        public int ProcessId { get; }
        public string Program { get; }
        /// <summary>The VM whose qemu this is (libvirt's guest=NAME), or null for another program.</summary>
        public string? VmName { get; }
        /// <summary>The file is open for writing.</summary>
        public bool Writing { get; }

        public override string ToString() => VmName != null
            ? $"running VM '{VmName}' (qemu, pid {ProcessId})"
            : $"{Program} (pid {ProcessId})";
    }

    /// <summary>A disk file is held by a running VM (or another program) and must be neither read as a stopped disk nor replaced.</summary>
    public sealed class DiskInUseException : IOException
    {
        public DiskInUseException(string message, string path, FileUser user) : base(message)
        {
            ImagePath = path;
            User = user;
        }

        public string ImagePath { get; }
        public FileUser User { get; }
    }

    /// <summary>
    /// Which processes of this host have a file open, found in /proc (every process's open files and their flags, as
    /// lsof finds them): qemu keeps its disks open for as long as the VM runs, on this host's libvirt or any other
    /// qemu. Elsewhere than Linux the answer is "none": Hyper-V opens its disks exclusively, so opening them fails.
    /// </summary>
    public static class FileUsers
    {
        /// <summary>The processes that have <paramref name="path"/> open (any of its hard links or symlinks resolved).</summary>
        public static List<FileUser> Of(string path) => Of(new[] { path })[path];

        /// <summary>
        /// The processes that have each of <paramref name="paths"/> open, found in one pass over /proc: every process's
        /// open files are read once, however many paths are asked about.
        /// </summary>
        public static Dictionary<string, List<FileUser>> Of(IReadOnlyCollection<string> paths)
        {
            var users = new Dictionary<string, List<FileUser>>(StringComparer.Ordinal);
            foreach (var p in paths) users[p] = new List<FileUser>();
            if (!RuntimeInformation.IsOSPlatform(OSPlatform.Linux)) return users;
            var byTarget = new Dictionary<string, List<string>>(StringComparer.Ordinal);
            foreach (var p in paths.Where(File.Exists))
            {
                string target = RealPath(p);
                if (!byTarget.TryGetValue(target, out var asked)) byTarget[target] = asked = new List<string>();
                asked.Add(p);
            }
            if (byTarget.Count == 0) return users;
            int self = System.Diagnostics.Process.GetCurrentProcess().Id;
            IEnumerable<string> processes;
            try { processes = Directory.EnumerateDirectories("/proc"); }
            catch (IOException) { return users; }
            foreach (var dir in processes)
            {
                if (!int.TryParse(Path.GetFileName(dir), out int pid) || pid == self) continue;
                var found = new Dictionary<string, bool>(StringComparer.Ordinal); // target -> open for writing
                try
                {
                    foreach (var fd in Directory.EnumerateFiles(Path.Combine(dir, "fd")))
                    {
                        string? link = ReadLink(fd);
                        if (link is null || !byTarget.ContainsKey(link)) continue;
                        bool writing = OpenForWriting(Path.Combine(dir, "fdinfo", Path.GetFileName(fd)));
                        found[link] = found.TryGetValue(link, out bool before) ? before | writing : writing;
                    }
                }
                catch (Exception e) when (e is IOException || e is UnauthorizedAccessException)
                {
                    continue; // gone meanwhile, or not ours to see
                }
                foreach (var hit in found)
                {
                    var user = Describe(pid, hit.Value);
                    foreach (var p in byTarget[hit.Key]) users[p].Add(user);
                }
            }
            return users;
        }

        /// <summary>Throws <see cref="DiskInUseException"/> when a process has <paramref name="path"/> open (for writing only, when asked).</summary>
        public static void EnsureNotInUse(string path, bool writersOnly, Func<FileUser, string> message) =>
            EnsureNotInUse(new[] { path }, writersOnly, (_, user) => message(user));

        /// <summary>As <see cref="EnsureNotInUse(string, bool, Func{FileUser, string})"/> for several files, in one pass over /proc.</summary>
        public static void EnsureNotInUse(IReadOnlyCollection<string> paths, bool writersOnly, Func<string, FileUser, string> message)
        {
            foreach (var entry in Of(paths))
            {
                var user = entry.Value.FirstOrDefault(u => !writersOnly || u.Writing);
                if (user != null) throw new DiskInUseException(message(entry.Key, user), entry.Key, user);
            }
        }

        private static FileUser Describe(int pid, bool writing)
        {
            string program = "";
            string? vm = null;
            try
            {
                program = File.ReadAllText($"/proc/{pid}/comm").Trim();
                var args = File.ReadAllText($"/proc/{pid}/cmdline").Split('\0');
                int i = Array.IndexOf(args, "-name");
                if (i >= 0 && i + 1 < args.Length) vm = GuestName(args[i + 1]);
            }
            catch (Exception e) when (e is IOException || e is UnauthorizedAccessException) { }
            return new FileUser(pid, program, vm, writing);
        }

        /// <summary>The VM name in qemu's -name argument: "guest=NAME,debug-threads=on" (a comma in NAME is doubled) or NAME alone.</summary>
        internal static string GuestName(string argument)
        {
            string rest = argument.StartsWith("guest=", StringComparison.Ordinal) ? argument.Substring(6) : argument;
            var name = new StringBuilder();
            for (int i = 0; i < rest.Length; i++)
            {
                if (rest[i] == ',')
                {
                    if (i + 1 < rest.Length && rest[i + 1] == ',') { name.Append(','); i++; continue; }
                    break;
                }
                name.Append(rest[i]);
            }
            return name.ToString();
        }

        private static bool OpenForWriting(string fdinfo)
        {
            foreach (var line in File.ReadLines(fdinfo))
            {
                if (!line.StartsWith("flags:", StringComparison.Ordinal)) continue;
                int flags = Convert.ToInt32(line.Substring(6).Trim(), 8);
                return (flags & 3) != 0; // O_WRONLY or O_RDWR
            }
            return false;
        }

        private static string RealPath(string path)
        {
            var full = Path.GetFullPath(path);
            IntPtr resolved = realpath(full, IntPtr.Zero);
            if (resolved == IntPtr.Zero) return full;
            try { return Marshal.PtrToStringAnsi(resolved) ?? full; }
            finally { free(resolved); }
        }

        private static string? ReadLink(string link)
        {
            var buffer = new byte[4096];
            long n = readlink(link, buffer, (IntPtr)buffer.Length).ToInt64();
            return n <= 0 ? null : Encoding.UTF8.GetString(buffer, 0, (int)n);
        }

        [DllImport("libc", SetLastError = true)]
        private static extern IntPtr readlink(string path, byte[] buffer, IntPtr size);

        [DllImport("libc", SetLastError = true)]
        private static extern IntPtr realpath(string path, IntPtr resolved);

        [DllImport("libc")]
        private static extern void free(IntPtr p);
    }
}
