using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Text;

namespace VmCheckpoint.Core.Disks.Qcow2
{
    /// <summary>
    /// Adds and removes persistent dirty bitmaps of a qcow2 file through <c>qemu-img bitmap</c>. Writing a bitmap means
    /// allocating clusters and updating refcounts in the user's image: qemu-img, the format's own tool, does that (and
    /// takes qemu's image lock, so an image that a running VM holds is refused); this project only reads bitmaps.
    /// </summary>
    internal sealed class Qcow2BitmapEditor
    {
        private static readonly TimeSpan Timeout = TimeSpan.FromMinutes(5);
        private readonly string _qemuImg;

        internal Qcow2BitmapEditor(string qemuImg) { _qemuImg = qemuImg; }

        /// <summary>The editor over the qemu-img found on PATH (or in <c>VMCHECKPOINT_QEMU_IMG</c>), or null when there is none.</summary>
        public static Qcow2BitmapEditor? Find()
        {
            var configured = Environment.GetEnvironmentVariable("VMCHECKPOINT_QEMU_IMG");
            if (!string.IsNullOrEmpty(configured)) return File.Exists(configured) ? new Qcow2BitmapEditor(configured!) : null;
            var path = Environment.GetEnvironmentVariable("PATH") ?? "";
            string exe = Path.DirectorySeparatorChar == '\\' ? "qemu-img.exe" : "qemu-img";
            // Only absolute folders: a relative PATH entry (".") would run whatever qemu-img the current folder holds.
            foreach (var dir in path.Split(Path.PathSeparator).Where(d => d.Length > 0 && Path.IsPathRooted(d)))
            {
                var candidate = Path.Combine(dir, exe);
                if (File.Exists(candidate)) return new Qcow2BitmapEditor(candidate);
            }
            return null;
        }

        /// <summary>
        /// Adds an enabled bitmap: from now on every write to the image by qemu is recorded in it. The image is checked
        /// first (<see cref="WhyNotWritable"/>): nothing is written into one that has not passed.
        /// </summary>
        public bool TryAdd(string image, string name, out string error)
        {
            string? why = WhyNotWritable(image);
            if (why != null)
            {
                error = $"nothing was written into it: {why}";
                return false;
            }

            return TryRun(out error, "bitmap", "--add", "-f", "qcow2", image, name);
        }

        /// <summary>
        /// Why a bitmap must not be written into <paramref name="path"/>, or null when it may: the image must open as a
        /// qcow2, every L1 and L2 entry must point inside the file, and nothing its writer relies on may be damaged. qemu-img
        /// allocates the bitmap's clusters by the refcounts: trusting broken ones could put them over the guest's data.
        /// </summary>
        internal static string? WhyNotWritable(string path)
        {
            try
            {
                using IDiskImage image = DiskImage.Open(path, DiskFormat.Qcow2);
                var q = (Qcow2Image)image;
                if (q.Header.IsMarkedCorrupt) return "qemu marked it corrupt";
                IReadOnlyList<string> warnings = DiskImage.GetWarnings(image);
                if (warnings.Count > 0) return warnings[0];
                DiskImage.CheckTables(image);
                return null;
            }
            catch (Exception e) when (e is IOException || e is UnauthorizedAccessException)
            {
                return e.Message;
            }
        }

        public bool TryRemove(string image, string name, out string error) => TryRun(out error, "bitmap", "--remove", "-f", "qcow2", image, name);

        private bool TryRun(out string error, params string[] args)
        {
            var psi = new ProcessStartInfo(_qemuImg, string.Join(" ", args.Select(QuoteArgument)))
            {
                UseShellExecute = false,
                RedirectStandardError = true,
                RedirectStandardOutput = true,
                RedirectStandardInput = true,
            };
            try
            {
                using var p = Process.Start(psi) ?? throw new IOException($"{_qemuImg} did not start");
                p.StandardInput.Close();
                var stderr = p.StandardError.ReadToEndAsync();
                var stdout = p.StandardOutput.ReadToEndAsync();
                if (!p.WaitForExit((int)Timeout.TotalMilliseconds))
                {
                    // Gone before we go on: a qemu-img still running would hold the image's lock, or still be writing it.
                    try { p.Kill(); } catch (InvalidOperationException) { }
                    p.WaitForExit();
                    error = $"qemu-img {args[1]} did not finish in {Timeout.TotalSeconds} s";
                    return false;
                }
                p.WaitForExit();
                error = (stderr.Result + stdout.Result).Trim();
                if (p.ExitCode == 0) return true;
                if (error.Length == 0) error = $"qemu-img {args[1]} exited with code {p.ExitCode}";
                return false;
            }
            catch (Exception e) when (e is IOException || e is System.ComponentModel.Win32Exception || e is InvalidOperationException)
            {
                error = $"{_qemuImg} could not run: {e.Message}";
                return false;
            }
        }

        /// <summary>One argument as .NET splits a command line (the Windows C runtime's rules, on every platform).</summary>
        internal static string QuoteArgument(string s)
        {
            if (s.Length > 0 && s.All(c => !char.IsWhiteSpace(c) && c != '"' && c != '\\' && c != '\'')) return s;
            var b = new StringBuilder("\"");
            int backslashes = 0;
            foreach (char c in s)
            {
                if (c == '\\') { backslashes++; continue; }
                if (c == '"') b.Append('\\', backslashes * 2 + 1);
                else b.Append('\\', backslashes);
                backslashes = 0;
                b.Append(c);
            }
            b.Append('\\', backslashes * 2);
            return b.Append('"').ToString();
        }
    }
}
