#if NET
using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Runtime.InteropServices;
using System.Threading;

namespace VmCheckpoint.Core.Exports
{
    /// <summary>
    /// The export server process (VmCheckpoint.Serve): <c>--folder F --repository R --checkpoint ID --vm NAME
    /// [--disk NAME]... [--purpose P] [--idle-exit SECONDS] [--open] [--key-file K]</c> (K: the master key of an encrypted repository, deleted once read). It serves on F/nbd.sock, logs to F/server.log,
    /// writes F/server.json once it listens, stops on SIGTERM or when idle, and then removes F. A server that cannot
    /// start leaves F with its log and no server.json, for the one who started it to read.
    /// </summary>
    public static class ExportServerProgram
    {
        public static int Main(string[] args)
        {
            string? folder = null, repository = null, checkpoint = null, vm = null, purpose = null;
            var disks = new List<string>();
            TimeSpan? idle = null;
            bool open = false;
            byte[]? masterKey = null;
            for (int i = 0; i < args.Length; i++)
            {
                string Next() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{args[i]} needs a value");
                switch (args[i])
                {
                    case "--folder": folder = Next(); break;
                    case "--repository": repository = Next(); break;
                    case "--checkpoint": checkpoint = Next(); break;
                    case "--vm": vm = Next(); break;
                    case "--disk": disks.Add(Next()); break;
                    case "--purpose": purpose = Next(); break;
                    case "--idle-exit": idle = TimeSpan.FromSeconds(double.Parse(Next(), CultureInfo.InvariantCulture)); break;
                    case "--open": open = true; break;
                    case "--key-file":
                        // The master key of an encrypted repository, handed over in a file readable by its owner only.
                        var keyFile = Next();
                        masterKey = File.ReadAllBytes(keyFile);
                        File.Delete(keyFile);
                        break;
                    default: Console.Error.WriteLine($"unknown argument {args[i]}"); return 2;
                }
            }
            if (folder is null || repository is null || checkpoint is null)
            {
                Console.Error.WriteLine("usage: VmCheckpoint.Serve --folder F --repository R --checkpoint ID [--vm NAME] [--disk NAME]... [--purpose P] [--idle-exit SECONDS] [--open] [--key-file K]");
                return 2;
            }
            Directory.CreateDirectory(folder);
            var logPath = Path.Combine(folder, ExportServerInfo.LogFileName);
            using var logWriter = new StreamWriter(new FileStream(logPath, FileMode.Append, FileAccess.Write, FileShare.ReadWrite)) { AutoFlush = true };
            var gate = new object();
            void Log(string line) { lock (gate) logWriter.WriteLine($"{DateTime.UtcNow:o} {line}"); }
            using var stop = new CancellationTokenSource();
            using var term = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c => { c.Cancel = true; Log("SIGTERM: stopping"); stop.Cancel(); });
            using var interrupt = PosixSignalRegistration.Create(PosixSignal.SIGINT, c => { c.Cancel = true; stop.Cancel(); });
            string socket = Path.Combine(folder, ExportServerInfo.SocketFileName);
            string state = Path.Combine(folder, ExportServerInfo.StateFileName);
            var options = new ExportServerOptions
            {
                RepositoryPath = repository,
                MasterKey = masterKey,
                CheckpointId = checkpoint,
                DiskNames = disks.Count > 0 ? disks : null,
                SocketPath = socket,
                IdleExit = idle,
            };
            bool listened = false;
            try
            {
                CheckpointExportServer.Run(options, exports =>
                {
                    // qemu runs as its own user: the socket must be reachable for it (the folder's name is not listed).
                    if (open && !OperatingSystem.IsWindows()) File.SetUnixFileMode(socket, (UnixFileMode)0x1B6); // 0666
                    var info = new ExportServerInfo
                    {
                        Folder = folder,
                        ProcessId = Environment.ProcessId,
                        SocketPath = socket,
                        RepositoryPath = repository,
                        CheckpointId = checkpoint,
                        VmName = vm ?? "",
                        Purpose = purpose ?? "",
                        StartTime = DateTime.UtcNow,
                        Disks = exports.Select(e => new ExportedDiskInfo { Name = e.Name, Size = e.Size, Uri = ExportServerInfo.Uri(e.Name, socket) }).ToList(),
                    };
                    File.WriteAllBytes(state + ".tmp", info.Serialize());
                    File.Move(state + ".tmp", state, overwrite: true);
                    listened = true;
                    Log($"serving {info}");
                }, Log, stop.Token);
                Log("stopped");
            }
            catch (OperationCanceledException) when (stop.IsCancellationRequested)
            {
                Log("stopped");
            }
            catch (Exception e)
            {
                Log($"failed: {e.GetType().Name}: {e.Message}");
                if (!listened) return 1; // the folder and its log stay for whoever started this server
            }
            finally
            {
                try { File.Delete(state); } catch (IOException) { }
            }
            logWriter.Dispose();
            try { Directory.Delete(folder, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
            return 0;
        }
    }
}
#endif
