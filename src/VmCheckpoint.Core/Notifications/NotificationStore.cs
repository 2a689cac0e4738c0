using System;
using System.IO;
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace VmCheckpoint.Core.Notifications
{
    /// <summary>Where a run finds the notification settings; tests hand settings in directly.</summary>
    public interface INotificationSettingsSource
    {
        /// <summary>The settings, or null when none are set. Throws <see cref="InvalidDataException"/> on a damaged file.</summary>
        NotificationSettings? Load();
    }

    /// <summary>
    /// The machine-wide settings: &lt;root&gt;/etc/vmcheckpoint/notifications.json, beside the schedules (root is "/"
    /// except in tests, $VMCHECKPOINT_SCHEDULE_ROOT, as for ScheduleStore). Written whole or not at all (temporary
    /// name, flush, rename) and, on Linux, created with mode 0600: it may hold the SMTP password.
    /// </summary>
    public sealed class NotificationStore : INotificationSettingsSource
    {
        /// <summary>The variable that moves the schedules' root (Scheduling.ScheduleStore.RootVariable, which sits above this layer).</summary>
        public const string RootVariable = "VMCHECKPOINT_SCHEDULE_ROOT";
        public const string FileName = "notifications.json";

        public NotificationStore(string? root = null)
        {
            Root = root ?? Environment.GetEnvironmentVariable(RootVariable) ?? "/";
        }

        public string Root { get; }
        public string Folder => System.IO.Path.Combine(Root, "etc", "vmcheckpoint");
        public string Path => System.IO.Path.Combine(Folder, FileName);

        public NotificationSettings? Load()
        {
            byte[] content;
            try { content = File.ReadAllBytes(Path); }
            catch (FileNotFoundException) { return null; }
            catch (DirectoryNotFoundException) { return null; }
            return NotificationSettings.Parse(content, Path);
        }

        /// <summary>Writes the settings whole or not at all; a reader sees the old file or the new one, never half.</summary>
        public void Save(NotificationSettings settings)
        {
            settings.Validate();
            Directory.CreateDirectory(Folder);
            string temporary = Path + "." + Guid.NewGuid().ToString("N").Substring(0, 8) + ".tmp";
            try
            {
                using (var file = PrivateFile.CreateNew(temporary))
                {
                    var bytes = settings.Serialize();
                    file.Write(bytes, 0, bytes.Length);
                    file.Flush(flushToDisk: true);
                }
                if (File.Exists(Path)) File.Replace(temporary, Path, null);
                else File.Move(temporary, Path);
            }
            catch
            {
                try { File.Delete(temporary); } catch (IOException) { }
                throw;
            }
        }

        /// <summary>Deletes the settings; true when there were any.</summary>
        public bool Remove()
        {
            if (!File.Exists(Path)) return false;
            File.Delete(Path);
            return true;
        }
    }

    /// <summary>A new file that only its owner may read, from the instant it exists (not created open, then closed).</summary>
    internal static class PrivateFile
    {
        private const int O_WRONLY = 0x1, O_CREAT = 0x40, O_EXCL = 0x80, O_CLOEXEC = 0x80000; // Linux values

        public static FileStream CreateNew(string path)
        {
            if (!RuntimeInformation.IsOSPlatform(OSPlatform.Linux))
            {
                // Windows: the file takes its folder's ACL (an administrator's folder under the system drive).
                return new FileStream(path, FileMode.CreateNew, FileAccess.Write);
            }
            int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, Convert.ToUInt32("600", 8));
            if (fd < 0)
            {
                int errno = Marshal.GetLastWin32Error();
                throw errno switch
                {
                    13 => new UnauthorizedAccessException($"Cannot create {path}: permission denied (the notification settings are root's: run as root)."),
                    17 => new IOException($"Cannot create {path}: it exists."),
                    _ => new IOException($"Cannot create {path}: error {errno}."),
                };
            }
            return new FileStream(new SafeFileHandle((IntPtr)fd, ownsHandle: true), FileAccess.Write);
        }

        [DllImport("libc", SetLastError = true)]
        private static extern int open(string path, int flags, uint mode);
    }
}
