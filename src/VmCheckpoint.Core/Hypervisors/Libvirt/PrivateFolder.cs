using System;
using System.IO;
using System.Runtime.InteropServices;

namespace VmCheckpoint.Core.Hypervisors.Libvirt
{
    /// <summary>
    /// A folder that only this process's user and qemu may enter: it holds the NBD socket a backup exports the disks on,
    /// the scratch files and the saved memory of a checkpoint. Owned by qemu's user (libvirt-qemu, which qemu creates the
    /// socket as) with mode 0770 when this process is root; 0700 otherwise (session libvirt runs qemu as the caller).
    /// Never world-writable: anyone could otherwise read a VM's memory or connect to its disks.
    /// </summary>
    internal static class PrivateFolder
    {
        /// <summary>The user Debian's and most distributions' system libvirt runs qemu as (qemu.conf's default).</summary>
        public const string QemuUser = "libvirt-qemu";

        public static string Create(string prefix)
        {
            string path = Path.Combine(Path.GetTempPath(), prefix + Guid.NewGuid().ToString("N").Substring(0, 12));
            Directory.CreateDirectory(path);
            if (!RuntimeInformation.IsOSPlatform(OSPlatform.Linux)) return path;
            // Closed first, then opened to qemu alone: at no instant is it open to others.
            chmod(path, Convert.ToUInt32("700", 8));
            if (geteuid() == 0 && TryFindUser(QemuUser, out uint uid, out uint gid) && chown(path, uid, gid) == 0)
                chmod(path, Convert.ToUInt32("770", 8));
            return path;
        }

        private static bool TryFindUser(string name, out uint uid, out uint gid)
        {
            uid = gid = 0;
            IntPtr entry = getpwnam(name);
            if (entry == IntPtr.Zero) return false;
            // struct passwd: char *pw_name; char *pw_passwd; uid_t pw_uid; gid_t pw_gid; ...
            uid = (uint)Marshal.ReadInt32(entry, 2 * IntPtr.Size);
            gid = (uint)Marshal.ReadInt32(entry, 2 * IntPtr.Size + 4);
            return true;
        }

        [DllImport("libc", SetLastError = true)]
        private static extern int chmod(string path, uint mode);

        [DllImport("libc", SetLastError = true)]
        private static extern int chown(string path, uint owner, uint group);

        [DllImport("libc")]
        private static extern uint geteuid();

        [DllImport("libc")]
        private static extern IntPtr getpwnam(string name);
    }
}
