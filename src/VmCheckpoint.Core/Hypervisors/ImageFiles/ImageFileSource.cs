using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using VmCheckpoint.Core.Disks;
using VmCheckpoint.Core.Disks.Qcow2;
using VmCheckpoint.Core.Reporting;

namespace VmCheckpoint.Core.Hypervisors.ImageFiles
{
    /// <summary>How to checkpoint image files that no VM is running on.</summary>
    public sealed class ImageFileOptions
    {
        /// <summary>
        /// Keep a persistent dirty bitmap in each qcow2 (version 3, no backing file), so that the next checkpoint reads
        /// only what was written since this one. Off: the files are only read, and every data block is read each time.
        /// </summary>
        public bool ChangeTracking { get; set; } = true;

        /// <summary>The format every file must be (qemu-img's -f); null: each file's extension and content tell.</summary>
        public DiskFormat? Format { get; set; }
    }

    /// <summary>
    /// Image files checkpointed as the disks of one VM (a shut-off VM's disks, a copied image): a checkpoint source like
    /// a hypervisor host, whose sessions track changes with persistent qcow2 dirty bitmaps (<see cref="ImageFileSession"/>).
    /// </summary>
    public sealed class ImageFileSource : ICheckpointSource
    {
        /// <summary>The prefix of the bitmaps this module adds; others' bitmaps are never touched.</summary>
        public const string BitmapPrefix = "vmcheckpoint-";

        private readonly IReadOnlyList<string> _paths;
        private readonly ImageFileOptions _options;
        private readonly Qcow2BitmapEditor? _editor;

        public ImageFileSource(IReadOnlyList<string> paths, ImageFileOptions? options = null)
            : this(paths, options, Qcow2BitmapEditor.Find())
        {
        }

        internal ImageFileSource(IReadOnlyList<string> paths, ImageFileOptions? options, Qcow2BitmapEditor? editor)
        {
            _paths = paths;
            _options = options ?? new ImageFileOptions();
            _editor = editor;
        }

        public string Name => HypervisorNames.Offline;

        public IVmCheckpointSession BeginCheckpoint(string vmName, CheckpointPlan plan, IJobReporter reporter) =>
            ImageFileSession.Open(vmName, _paths, _options, plan, _editor, reporter);

        /// <summary>
        /// Opens image files as the disks of one checkpoint, each named after its file's base name, each checked as it
        /// is opened (format, tables, names): a file that fails leaves every file closed and nothing written.
        /// </summary>
        public static List<DiskSource> OpenDiskFiles(IEnumerable<string> paths, DiskFormat? format = null)
        {
            var sources = new List<DiskSource>();
            try
            {
                foreach (var path in paths)
                {
                    var full = Path.GetFullPath(path);
                    if (!File.Exists(full)) throw new FileNotFoundException($"Disk image {full} does not exist.", full);
                    var name = Path.GetFileNameWithoutExtension(full);
                    if (string.IsNullOrEmpty(name)) name = Path.GetFileName(full);
                    DiskNames.Validate(name, full);
                    if (sources.Any(s => string.Equals(s.Name, name, StringComparison.OrdinalIgnoreCase)))
                        throw new ArgumentException($"Two disks would be named '{name}' ({full}); give each disk file a distinct name.");
                    sources.Add(new DiskSource(name, DiskImage.Open(full, format), null, full));
                }
                return sources;
            }
            catch
            {
                foreach (var s in sources) s.Image.Dispose();
                throw;
            }
        }

        /// <summary>The prefix of one VM's bitmaps: runs for other VM names never remove them.</summary>
        /// <summary>
        /// The bitmaps named with one of <paramref name="prefixes"/> (this module's: <see cref="BitmapPrefix"/> when none
        /// is given) in each qcow2 file, as lines naming bitmap and file; with <paramref name="remove"/>, removed with
        /// qemu-img. A file another process holds is refused (<see cref="DiskInUseException"/>) before anything is removed.
        /// </summary>
        public static IReadOnlyList<string> ChangeTracking(IEnumerable<string> paths, bool remove, params string[] prefixes)
        {
            if (prefixes.Length == 0) prefixes = new[] { BitmapPrefix };
            var files = paths.Select(Path.GetFullPath).Distinct(StringComparer.Ordinal).ToList();
            if (remove)
                FileUsers.EnsureNotInUse(files, writersOnly: false, (file, user) =>
                    $"{file} is open in {(user.VmName != null ? $"VM '{user.VmName}'" : $"{user.Program} (process {user.ProcessId})")}: its bitmaps are not removed while it is. " +
                    (user.VmName != null ? $"Use Disable-VmChangeTracking -Name '{user.VmName}' for a VM's disks, or stop the VM first." : "Close it first."));
            var found = new List<string>();
            Qcow2BitmapEditor? editor = null;
            foreach (var file in files)
            {
                IReadOnlyList<string> names;
                using (var image = DiskImage.Open(file, DiskFormat.Qcow2))
                    names = ((Qcow2Image)image).ReadBitmaps().Select(b => b.Name).Where(n => prefixes.Any(p => n.StartsWith(p, StringComparison.Ordinal))).ToList();
                foreach (var name in names)
                {
                    found.Add($"bitmap {name} in {file}");
                    if (!remove) continue;
                    editor ??= Qcow2BitmapEditor.Find() ?? throw new InvalidOperationException($"qemu-img is needed to remove bitmap {name} from {file}, and none is on PATH.");
                    if (!editor.TryRemove(file, name, out string error)) throw new IOException($"Removing bitmap {name} from {file}: {error}");
                }
            }
            return found;
        }

        internal static string VmPrefix(string vmName) => BitmapPrefix + ShortHash(vmName) + "-";

        internal static string DiskBitmap(string tracking, string diskName) => tracking + "-" + ShortHash(diskName);

        /// <summary>
        /// The first 8 hex digits of the name's SHA-256 (the hash that also names the VM's folder in the repository):
        /// bitmaps written by earlier versions keep their names.
        /// </summary>
        private static string ShortHash(string text)
        {
            using var sha = System.Security.Cryptography.SHA256.Create();
            var hash = sha.ComputeHash(System.Text.Encoding.UTF8.GetBytes(text));
            return BitConverter.ToString(hash, 0, 4).Replace("-", "").ToLowerInvariant();
        }
    }
}
