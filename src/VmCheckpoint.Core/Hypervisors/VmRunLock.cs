using System;
using System.IO;

namespace VmCheckpoint.Core.Hypervisors
{
    /// <summary>
    /// One checkpoint run per VM at a time, across processes of this host: an exclusive lock file per VM id, which
    /// says "running" while a run is under way. Found saying so by the next run, its holder died mid-run, and what
    /// that run left on the hypervisor (a backup job, a checkpoint) is the next run's to clean up.
    /// </summary>
    internal sealed class VmRunLock : IDisposable
    {
        private readonly FileStream _file;

        private VmRunLock(FileStream file, bool previousRunDied)
        {
            _file = file;
            PreviousRunDied = previousRunDied;
        }

        public bool PreviousRunDied { get; }

        public static VmRunLock Take(string vmId, string vmName)
        {
            var dir = Path.Combine(Path.GetTempPath(), "vmcheckpoint-locks");
            Directory.CreateDirectory(dir);
            FileStream file;
            try
            {
                file = new FileStream(Path.Combine(dir, vmId + ".lock"), FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
            }
            catch (IOException)
            {
                throw new VmBusyException($"Another checkpoint of '{vmName}' is running.");
            }
            bool died = file.Length > 0 && file.ReadByte() == (byte)'R';
            file.SetLength(0);
            file.WriteByte((byte)'R');
            file.Flush(true);
            return new VmRunLock(file, died);
        }

        public void Dispose()
        {
            try { _file.SetLength(0); _file.Flush(true); } catch (IOException) { }
            _file.Dispose();
        }
    }
}
