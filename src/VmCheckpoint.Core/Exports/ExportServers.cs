using System;
using System.Collections.Generic;
using System.ComponentModel;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Runtime.InteropServices;
using System.Threading;
using VmCheckpoint.Core.Repository;

namespace VmCheckpoint.Core.Exports
{
    /// <summary>What to serve, and for whom.</summary>
    public sealed class ExportServerRequest
    {
        public ExportServerRequest(CheckpointRepository repository, CheckpointManifest checkpoint, string purpose)
        {
            Repository = repository;
            Checkpoint = checkpoint;
            Purpose = purpose;
        }

        public CheckpointRepository Repository { get; }
        public CheckpointManifest Checkpoint { get; }
        public string Purpose { get; }
        public IReadOnlyCollection<string>? DiskNames { get; set; }
        /// <summary>Stop after this long without a client (null: only when stopped).</summary>
        public TimeSpan? IdleExit { get; set; } = TimeSpan.FromMinutes(2);
        /// <summary>Let other local users (qemu's) connect: the socket is 0666 in a folder whose name is not listed.</summary>
        public bool OpenToOtherUsers { get; set; }
        public TimeSpan StartTimeout { get; set; } = TimeSpan.FromSeconds(30);
        /// <summary>
        /// The server's folder name under exports/ (a random one when null). Instant restore names its own: the overlays
        /// record the socket's path, so a server started again after a host restart must listen at the same place.
        /// </summary>
        public string? FolderName { get; set; }
    }

    /// <summary>
    /// Export servers are processes of their own (VmCheckpoint.Serve, run by dotnet), detached from the PowerShell
    /// session that started them, so that a VM or a mount reading from them outlives it. Each lives in a folder of its
    /// own under <see cref="RuntimeRoot"/>: exports/&lt;random&gt;/ holding nbd.sock, server.log and server.json.
    /// </summary>
    public static class ExportServers
    {
        public const string ServerAssembly = "VmCheckpoint.Serve.dll";

        /// <summary>/run/vmcheckpoint for root, $XDG_RUNTIME_DIR/vmcheckpoint (or /tmp/vmcheckpoint-UID) for others; VMCHECKPOINT_RUNTIME_DIR overrides.</summary>
        public static string RuntimeRoot
        {
            get
            {
                var overridden = Environment.GetEnvironmentVariable("VMCHECKPOINT_RUNTIME_DIR");
                if (!string.IsNullOrEmpty(overridden)) return overridden!;
                uint uid = geteuid();
                if (uid == 0) return "/run/vmcheckpoint";
                var xdg = Environment.GetEnvironmentVariable("XDG_RUNTIME_DIR");
                return !string.IsNullOrEmpty(xdg) ? Path.Combine(xdg!, "vmcheckpoint") : $"/tmp/vmcheckpoint-{uid}";
            }
        }

        public static string ExportsFolder => Path.Combine(RuntimeRoot, "exports");

        /// <summary>Starts a server and returns once its socket listens; a server that cannot start is an error quoting its log.</summary>
        public static ExportServerInfo Start(ExportServerRequest request) => Start(request, null);

        /// <summary>
        /// As <see cref="Start(ExportServerRequest)"/>, running <paramref name="whileStarting"/> while the server process
        /// starts (a second of a dotnet process and the repository's index): work that does not need the export. If it
        /// fails, the server is stopped.
        /// </summary>
        public static ExportServerInfo Start(ExportServerRequest request, Action? whileStarting)
        {
            var manifest = request.Checkpoint;
            Directory.CreateDirectory(ExportsFolder);
            // Traversable, not listable: qemu (another user) reaches a socket whose folder name it is given.
            Chmod(RuntimeRoot, 0x1C9); // 0711
            Chmod(ExportsFolder, 0x1C9);
            var folder = Path.Combine(ExportsFolder, request.FolderName ?? Hex.Random(8));
            if (List().Any(s => s.Folder == folder)) throw new ExportServerException($"An export server already serves from {folder}.");
            TryDeleteFolder(folder);
            Directory.CreateDirectory(folder);
            Chmod(folder, request.OpenToOtherUsers ? 0x1C9 : 0x1C0); // 0711 or 0700
            var arguments = new List<string>
            {
                ServerPath(),
                "--folder", folder, "--repository", request.Repository.Path, "--checkpoint", manifest.Id,
                "--vm", manifest.VmName, "--purpose", request.Purpose,
            };
            foreach (var d in request.DiskNames ?? Array.Empty<string>()) { arguments.Add("--disk"); arguments.Add(d); }
            if (request.IdleExit is { } idle) { arguments.Add("--idle-exit"); arguments.Add(idle.TotalSeconds.ToString(System.Globalization.CultureInfo.InvariantCulture)); }
            if (request.OpenToOtherUsers) arguments.Add("--open");
            if (request.Repository.Layout.Key is { } key)
            {
                // An encrypted repository: the server gets the master key this process unlocked, in a file only this
                // user reads, which it deletes once read (never on a command line, which every user sees in ps).
                var keyFile = Path.Combine(folder, "master.key");
#if NET
                var options = new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write };
                if (!OperatingSystem.IsWindows()) options.UnixCreateMode = (UnixFileMode)0x180; // 0600
                using (var stream = new FileStream(keyFile, options))
                    stream.Write(key.ToBytes());
#else
                // Empty and 0600 before the key goes in (PowerShell 7.4/7.5 on Linux load this build too).
                using (var stream = new FileStream(keyFile, FileMode.CreateNew, FileAccess.Write))
                {
                    if (!RuntimeInformation.IsOSPlatform(OSPlatform.Windows)) Chmod(keyFile, 0x180); // 0600
                    var material = key.ToBytes();
                    stream.Write(material, 0, material.Length);
                }
#endif
                arguments.Add("--key-file");
                arguments.Add(keyFile);
            }
            // A session of its own: the server outlives this process and its terminal.
            HostCommand.Detach(DotnetHost(), arguments, Path.Combine(folder, "stdout.log"));
            var state = Path.Combine(folder, ExportServerInfo.StateFileName);
            var log = Path.Combine(folder, ExportServerInfo.LogFileName);
            if (whileStarting != null)
            {
                try { whileStarting(); }
                catch
                {
                    StopStarting(folder, state, request.StartTimeout);
                    throw;
                }
            }
            var watch = Stopwatch.StartNew();
            while (!File.Exists(state))
            {
                if (watch.Elapsed > request.StartTimeout || LogSaysFailed(log))
                {
                    string text = File.Exists(log) ? File.ReadAllText(log).Trim() : "(no log)";
                    TryDeleteFolder(folder);
                    throw new ExportServerException($"The export server for checkpoint {manifest.Id} of '{manifest.VmName}' did not start: {LastLine(text)}");
                }
                Thread.Sleep(20);
            }
            return ExportServerInfo.Parse(File.ReadAllBytes(state), state);
        }

        /// <summary>Stops a server that is still starting: once it has said who it is, or when it never does.</summary>
        private static void StopStarting(string folder, string state, TimeSpan timeout)
        {
            var watch = Stopwatch.StartNew();
            while (!File.Exists(state) && watch.Elapsed < timeout && !LogSaysFailed(Path.Combine(folder, ExportServerInfo.LogFileName))) Thread.Sleep(20);
            try { if (File.Exists(state)) { Stop(ExportServerInfo.Parse(File.ReadAllBytes(state), state)); return; } }
            catch (InvalidDataException) { }
            TryDeleteFolder(folder);
        }

        /// <summary>Every running server of this host (folders without a live server are removed on the way).</summary>
        public static IReadOnlyList<ExportServerInfo> List()
        {
            var result = new List<ExportServerInfo>();
            if (!Directory.Exists(ExportsFolder)) return result;
            foreach (var folder in Directory.GetDirectories(ExportsFolder))
            {
                var state = Path.Combine(folder, ExportServerInfo.StateFileName);
                ExportServerInfo? info = null;
                try { if (File.Exists(state)) info = ExportServerInfo.Parse(File.ReadAllBytes(state), state); }
                catch (Exception e) when (e is IOException || e is InvalidDataException) { }
                if (info != null && IsServer(info.ProcessId)) result.Add(info);
                else if (info != null || Directory.GetLastWriteTimeUtc(folder) < DateTime.UtcNow.AddMinutes(-10)) TryDeleteFolder(folder);
            }
            return result;
        }

        /// <summary>Stops a server (SIGTERM, then SIGKILL after <paramref name="wait"/>) and removes its folder.</summary>
        public static void Stop(ExportServerInfo server, TimeSpan? wait = null)
        {
            if (IsServer(server.ProcessId))
            {
                kill(server.ProcessId, 15);
                var watch = Stopwatch.StartNew();
                while (IsServer(server.ProcessId) && watch.Elapsed < (wait ?? TimeSpan.FromSeconds(10))) Thread.Sleep(20);
                if (IsServer(server.ProcessId)) kill(server.ProcessId, 9);
                while (IsServer(server.ProcessId) && watch.Elapsed < (wait ?? TimeSpan.FromSeconds(10)) + TimeSpan.FromSeconds(5)) Thread.Sleep(20);
            }
            TryDeleteFolder(server.Folder);
        }

        /// <summary>Whether <paramref name="pid"/> is a running export server (not a process that took its number since).</summary>
        public static bool IsServer(int pid)
        {
            try
            {
                var cmdline = File.ReadAllText($"/proc/{pid}/cmdline");
                if (!cmdline.Contains(ServerAssembly)) return false;
                // A zombie has no more to serve.
                var stat = File.ReadAllText($"/proc/{pid}/stat");
                int close = stat.LastIndexOf(')');
                return close < 0 || close + 2 >= stat.Length || stat[close + 2] != 'Z';
            }
            catch (Exception e) when (e is IOException || e is UnauthorizedAccessException) { return false; }
        }

        private static bool LogSaysFailed(string log)
        {
            try { return File.Exists(log) && File.ReadAllText(log).Contains(" failed: "); }
            catch (IOException) { return false; }
        }

        private static string LastLine(string text)
        {
            var lines = text.Split('\n');
            var line = lines[lines.Length - 1];
            int failed = line.IndexOf(" failed: ", StringComparison.Ordinal);
            return failed >= 0 ? line.Substring(failed + 9) : line;
        }

        private static void TryDeleteFolder(string folder)
        {
            try { if (Directory.Exists(folder)) Directory.Delete(folder, recursive: true); }
            catch (IOException) { }
            catch (UnauthorizedAccessException) { }
        }

        /// <summary>VmCheckpoint.Serve.dll beside this assembly, or in the module's net10.0 folder beside a netstandard2.0 one.</summary>
        internal static string ServerPath()
        {
            var here = Path.GetDirectoryName(typeof(ExportServers).Assembly.Location) ?? ".";
            foreach (var candidate in new[] { Path.Combine(here, ServerAssembly), Path.Combine(here, "..", "net10.0-linux-x64", ServerAssembly) })
                if (File.Exists(candidate)) return Path.GetFullPath(candidate);
            throw new ExportServerException($"The export server {ServerAssembly} is not beside {here}: rebuild the module (build.ps1 Build).");
        }

        /// <summary>The dotnet host: the one running this process when it is dotnet, else DOTNET_ROOT's, else the one on PATH.</summary>
        internal static string DotnetHost()
        {
            using (var me = Process.GetCurrentProcess())
            {
                var main = me.MainModule?.FileName;
                if (main != null && Path.GetFileName(main) == "dotnet") return main;
            }
            var root = Environment.GetEnvironmentVariable("DOTNET_ROOT");
            if (!string.IsNullOrEmpty(root) && File.Exists(Path.Combine(root!, "dotnet"))) return Path.Combine(root!, "dotnet");
            foreach (var dir in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':'))
                if (dir.Length > 0 && File.Exists(Path.Combine(dir, "dotnet"))) return Path.Combine(dir, "dotnet");
            throw new ExportServerException("The dotnet host is not found (not the running process, not in DOTNET_ROOT, not on PATH): the export server needs it.");
        }

        private static void Chmod(string path, int mode)
        {
            if (chmod(path, mode) != 0) throw new Win32Exception(Marshal.GetLastWin32Error(), $"chmod {path}");
        }

        [DllImport("libc", SetLastError = true)] private static extern int chmod(string path, int mode);
        [DllImport("libc")] private static extern uint geteuid();
        [DllImport("libc", SetLastError = true)] private static extern int kill(int pid, int signal);
    }

    /// <summary>An export server could not be started or reached.</summary>
    public sealed class ExportServerException : IOException
    {
        public ExportServerException(string message) : base(message) { }
    }
}
