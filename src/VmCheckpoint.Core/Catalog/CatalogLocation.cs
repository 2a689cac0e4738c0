using System;
using System.IO;
using System.Runtime.InteropServices;

namespace VmCheckpoint.Core.Catalog
{
    /// <summary>
    /// Where the catalog is when nobody says: one machine-wide file for root (Linux) or an elevated administrator and
    /// services (Windows), so that scheduled runs, the watcher and the admin's shell read the same job log; the
    /// user's own file otherwise. $VMCHECKPOINT_CATALOG overrides both.
    /// </summary>
    public static class CatalogLocation
    {
        /// <summary>/var/lib/vmcheckpoint/catalog.db, or %ProgramData%\VmCheckpoint\catalog.db.</summary>
        public static string MachineWide => RuntimeInformation.IsOSPlatform(OSPlatform.Windows)
            ? Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.CommonApplicationData), "VmCheckpoint", "catalog.db")
            : "/var/lib/vmcheckpoint/catalog.db";

        /// <summary>catalog.db under the user's local application data (~/.local/share/VmCheckpoint on Linux).</summary>
        public static string PerUser
        {
            get
            {
                var local = Environment.GetFolderPath(Environment.SpecialFolder.LocalApplicationData, Environment.SpecialFolderOption.Create);
                if (string.IsNullOrEmpty(local)) local = Path.GetTempPath();
                return Path.Combine(local, "VmCheckpoint", "catalog.db");
            }
        }

        /// <summary>True for root on Unix, and for an elevated administrator or SYSTEM on Windows.</summary>
        public static bool IsPrivileged
        {
            get
            {
                try { return RuntimeInformation.IsOSPlatform(OSPlatform.Windows) ? IsUserAnAdmin() : geteuid() == 0; }
                catch (Exception e) when (e is DllNotFoundException || e is EntryPointNotFoundException) { return false; }
            }
        }

        /// <summary>
        /// $VMCHECKPOINT_CATALOG, else the machine-wide file when privileged, else the user's. A privileged user whose
        /// own catalog predates the machine-wide one has it copied there once, so that no job history is left behind.
        /// </summary>
        public static string Default
        {
            get
            {
                var fromEnvironment = Environment.GetEnvironmentVariable(CheckpointCatalog.PathVariable);
                if (!string.IsNullOrEmpty(fromEnvironment)) return fromEnvironment!;
                if (!IsPrivileged) return PerUser;
                string machineWide = MachineWide;
                AdoptOlderCatalog(PerUser, machineWide);
                return machineWide;
            }
        }

        /// <summary>Copies the user's catalog to the machine-wide place when only the first exists (never overwrites).</summary>
        internal static void AdoptOlderCatalog(string older, string machineWide)
        {
            if (File.Exists(machineWide) || !File.Exists(older) || string.Equals(older, machineWide, StringComparison.Ordinal)) return;
            try
            {
                Directory.CreateDirectory(Path.GetDirectoryName(machineWide)!);
                // LiteDB keeps recent writes in a -log file beside the data file until its next checkpoint: copied first.
                string olderLog = LogFileOf(older);
                if (File.Exists(olderLog) && !File.Exists(LogFileOf(machineWide))) File.Copy(olderLog, LogFileOf(machineWide));
                string temporary = machineWide + "." + Guid.NewGuid().ToString("N").Substring(0, 8) + ".tmp";
                File.Copy(older, temporary);
                try { File.Move(temporary, machineWide); }
                catch (IOException) { File.Delete(temporary); } // another process adopted it first
            }
            catch (IOException) { } // the catalog is an index: a fresh one rebuilds from the repository
            catch (UnauthorizedAccessException) { }
        }

        private static string LogFileOf(string dataFile) =>
            Path.Combine(Path.GetDirectoryName(dataFile)!, Path.GetFileNameWithoutExtension(dataFile) + "-log" + Path.GetExtension(dataFile));

        [DllImport("libc")]
        private static extern uint geteuid();

        [DllImport("shell32.dll")]
        [return: MarshalAs(UnmanagedType.Bool)]
        private static extern bool IsUserAnAdmin();
    }
}
