using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;

namespace VmCheckpoint.Core.Exports
{
    /// <summary>The outcome of a host command.</summary>
    public sealed class HostCommandResult
    {
        public HostCommandResult(string command, int exitCode, string output, string error)
        {
            Command = command;
            ExitCode = exitCode;
            Output = output;
            Error = error;
        }

        public string Command { get; }
        public int ExitCode { get; }
        public string Output { get; }
        public string Error { get; }
        public bool Succeeded => ExitCode == 0;

        /// <summary>Throws, quoting the command and what it said, unless it succeeded.</summary>
        public HostCommandResult EnsureSucceeded(string what)
        {
            if (!Succeeded)
                throw new HostCommandException($"{what}: {Command} failed with exit code {ExitCode}: {(Error.Trim().Length > 0 ? Error.Trim() : Output.Trim())}");
            return this;
        }
    }

    /// <summary>A host command (mount, losetup, nbdfuse, ...) failed.</summary>
    public sealed class HostCommandException : IOException
    {
        public HostCommandException(string message) : base(message) { }
    }

    /// <summary>Runs the host's own tools: to completion, or detached into a session of their own.</summary>
    public static class HostCommand
    {
        public static HostCommandResult Run(string file, params string[] arguments) => Run(file, (IEnumerable<string>)arguments);

        public static HostCommandResult Run(string file, IEnumerable<string> arguments, TimeSpan? timeout = null)
        {
            var list = arguments.ToList();
            string command = file + " " + string.Join(" ", list);
            var start = new ProcessStartInfo(file)
            {
                UseShellExecute = false,
                RedirectStandardInput = true,
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                Arguments = Quote(list),
            };
            Process process;
            try
            {
                process = Process.Start(start) ?? throw new HostCommandException($"{file} did not start.");
            }
            catch (System.ComponentModel.Win32Exception e)
            {
                throw new HostCommandException($"{file} cannot be run ({e.Message}): install it (build.ps1 Bootstrap lists the packages).");
            }
            using (process)
            {
                process.StandardInput.Close();
                var output = process.StandardOutput.ReadToEndAsync();
                var error = process.StandardError.ReadToEndAsync();
                if (!process.WaitForExit((int)(timeout ?? TimeSpan.FromMinutes(2)).TotalMilliseconds))
                {
                    try { process.Kill(); } catch (InvalidOperationException) { }
                    throw new HostCommandException($"{command} did not finish in {(timeout ?? TimeSpan.FromMinutes(2)).TotalSeconds:0} s.");
                }
                process.WaitForExit();
                return new HostCommandResult(command, process.ExitCode, output.Result, error.Result);
            }
        }

        /// <summary>
        /// Starts <paramref name="file"/> in a session of its own (setsid), its input from /dev/null and its output
        /// appended to <paramref name="logPath"/>: it outlives this process and holds none of its pipes. It gets no
        /// repository password from this process's environment (an export server is handed the key it needs instead).
        /// </summary>
        public static void Detach(string file, IEnumerable<string> arguments, string logPath)
        {
            // The arguments reach the command as the shell's positional parameters: nothing is parsed by the shell.
            var all = new List<string> { "-c", "unset VMCHECKPOINT_PASSWORD VMCHECKPOINT_PASSWORD_FILE; log=\"$1\"; shift; exec setsid -f \"$@\" </dev/null >>\"$log\" 2>&1", "sh", logPath, file };
            all.AddRange(arguments);
            Run("/bin/sh", all).EnsureSucceeded($"Starting {Path.GetFileName(file)}");
        }

        /// <summary>Arguments quoted for the runtime's command-line parser (netstandard2.0 has no ArgumentList).</summary>
        private static string Quote(IEnumerable<string> arguments) =>
            string.Join(" ", arguments.Select(a => "\"" + a.Replace("\\", "\\\\").Replace("\"", "\\\"") + "\""));
    }
}
