using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;

namespace VmCheckpoint.Core.Repository.Backends
{
    /// <summary>
    /// A repository in a folder: on a local disk, or on an SMB or NFS share mounted as one. An object is a file of
    /// the object's name under the folder ('/' becomes the platform's separator); a put is a temporary file beside it
    /// (<c>&lt;name&gt;.&lt;random&gt;.tmp</c>), flushed to stable storage, then renamed to a name not taken
    /// (<see cref="AtomicFile"/>). What a killed process leaves is only such temporaries: never listed, removed by
    /// <see cref="RemoveAbandoned"/>. Tested on a real samba share (tests/Pester/Share.Tests.ps1): create-new, fsync and
    /// rename behave there as on a local disk, and a share that stops answering fails every call with EIO.
    /// </summary>
    /// <remarks>
    /// Repository objects go through the page cache: no O_DIRECT here (the image side of a run has it, Disks/DirectFile).
    /// A pack read is one stored block, a few hundred KiB at an unaligned offset, that a restore needs once; and most
    /// repositories live on shares, where DirectFile declines anyway (a direct transfer there is a synchronous round
    /// trip without readahead). Should local repositories ever read packs directly, it is decided here, in
    /// <see cref="OpenRead"/>, and nowhere above.
    /// </remarks>
    internal sealed class LocalFolderBackend : IRepositoryBackend
    {
        private readonly string _rootWithSeparator;

        public LocalFolderBackend(string folder)
        {
            Root = Path.GetFullPath(folder);
            _rootWithSeparator = Root.EndsWith(Path.DirectorySeparatorChar.ToString(), StringComparison.Ordinal) ? Root : Root + Path.DirectorySeparatorChar;
        }

        /// <summary>The folder, as a full path.</summary>
        public string Root { get; }

        public string Location => Root;

        public string Locate(string name) => PathOf(name);

        /// <summary>The file that holds an object.</summary>
        internal string PathOf(string name)
        {
            CheckName(name, isPrefix: false);
            return _rootWithSeparator + name.Replace('/', Path.DirectorySeparatorChar);
        }

        // Directory.Exists answers false for a folder that cannot be read as for one that is missing: right here
        // (either way there is no repository to open), wrong anywhere a listing is meant (see List).
        public bool LocationExists() => Directory.Exists(Root);

        public void CreateLocation(IReadOnlyCollection<string> prefixes)
        {
            if (Directory.Exists(Root) && Directory.EnumerateFileSystemEntries(Root).Any())
                throw new LocationNotEmptyException($"{Root} is not empty; a repository needs a folder of its own.");
            Directory.CreateDirectory(Root);
            foreach (var prefix in prefixes)
            {
                CheckName(prefix, isPrefix: true);
                Directory.CreateDirectory(_rootWithSeparator + prefix.TrimEnd('/').Replace('/', Path.DirectorySeparatorChar));
            }
        }

        public void Put(string name, byte[] content)
        {
            using var writer = OpenWrite(name);
            writer.Write(content, 0, content.Length);
            writer.Commit();
        }

        public IObjectWriter OpenWrite(string name)
        {
            string path = PathOf(name);
            var stream = AtomicFile.CreateTemporary(path, out var temporary);
            return new Writer(stream, temporary, path);
        }

        public IObjectReader OpenRead(string name)
        {
            string path = PathOf(name);
            try
            {
                // No buffer: every read is one pread of exactly the range asked for (a stored block).
                return new Reader(new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete, bufferSize: 1));
            }
            catch (Exception e) when (e is FileNotFoundException || e is DirectoryNotFoundException)
            {
                throw new ObjectNotFoundException($"{path} does not exist.", path);
            }
        }

        public ObjectInfo? GetInfo(string name)
        {
            var file = new FileInfo(PathOf(name));
            try
            {
                // Length stats the file and throws what stat met: missing is FileNotFoundException, EIO an IOException.
                return new ObjectInfo(name, file.Length, file.LastWriteTimeUtc);
            }
            catch (Exception e) when (e is FileNotFoundException || e is DirectoryNotFoundException)
            {
                return null;
            }
        }

        /// <summary>
        /// Names only: readdir gives them in one pass, while each length would be one more stat, a round trip on a share.
        /// Only a folder that does not exist is empty: Directory.EnumerateFiles throws for one that cannot be read
        /// (EIO from a share that stopped answering), where Directory.Exists would have answered false. The folder of
        /// the prefix is opened, so the repository's prefixes (packs/, index/, checkpoints/, locks/, a VM's folder)
        /// always fail so. Deeper down .NET's recursion decides what is a folder by stat and takes an entry whose stat
        /// fails for a file: such a folder is then one name (never a repository object's) and its objects are missing.
        /// </summary>
        public IReadOnlyList<ObjectInfo> List(string prefix)
        {
            CheckName(prefix, isPrefix: true);
            int slash = prefix.LastIndexOf('/');
            string folder = slash < 0 ? Root : _rootWithSeparator + prefix.Substring(0, slash).Replace('/', Path.DirectorySeparatorChar);
            List<string> files;
            try
            {
                files = Directory.EnumerateFiles(folder, "*", SearchOption.AllDirectories).ToList();
            }
            catch (DirectoryNotFoundException) when (!Directory.Exists(folder))
            {
                return Array.Empty<ObjectInfo>();
            }
            var result = new List<ObjectInfo>(files.Count);
            foreach (var file in files)
            {
                if (AtomicFile.IsTemporary(file) || !file.StartsWith(_rootWithSeparator, StringComparison.Ordinal)) continue;
                string name = file.Substring(_rootWithSeparator.Length);
                if (Path.DirectorySeparatorChar != '/') name = name.Replace(Path.DirectorySeparatorChar, '/');
                if (name.StartsWith(prefix, StringComparison.Ordinal)) result.Add(new ObjectInfo(name, null, null));
            }
            return result;
        }

        public void Delete(string name)
        {
            try
            {
                File.Delete(PathOf(name)); // a missing file is no error; a missing folder is
            }
            catch (DirectoryNotFoundException)
            {
            }
        }

        public int RemoveAbandoned(TimeSpan olderThan)
        {
            List<string> temporaries;
            try
            {
                temporaries = Directory.EnumerateFiles(Root, "*" + AtomicFile.TemporarySuffix, SearchOption.AllDirectories).ToList();
            }
            catch (DirectoryNotFoundException) when (!Directory.Exists(Root))
            {
                return 0;
            }
            int removed = 0;
            foreach (var file in temporaries)
            {
                var info = new FileInfo(file);
                if (!AtomicFile.IsTemporary(file) || !info.Exists || DateTime.UtcNow - info.LastWriteTimeUtc <= olderThan) continue;
                AtomicFile.TryDelete(file);
                removed++;
            }
            return removed;
        }

        /// <summary>
        /// Names stay inside the folder: relative, '/'-separated, no empty, "." or ".." segment, no backslash, and not a
        /// temporary's name. A prefix may be empty or end with '/'.
        /// </summary>
        private static void CheckName(string name, bool isPrefix)
        {
            if (name is null) throw new ArgumentNullException(nameof(name));
            if (isPrefix && name.Length == 0) return;
            bool bad = name.IndexOf('\\') >= 0 || name.IndexOf(':') >= 0 || name.StartsWith("/", StringComparison.Ordinal)
                       || (!isPrefix && (name.EndsWith("/", StringComparison.Ordinal) || AtomicFile.IsTemporary(name)));
            if (!bad)
            {
                var segments = name.Split('/');
                for (int i = 0; i < segments.Length && !bad; i++)
                {
                    bool last = i == segments.Length - 1;
                    if (isPrefix && last) bad = segments[i] == "." || segments[i] == "..";
                    else bad = segments[i].Length == 0 || segments[i] == "." || segments[i] == "..";
                }
            }
            if (bad) throw new ArgumentException($"'{name}' is not a valid object name{(isPrefix ? " prefix" : "")}.", nameof(name));
        }

        private sealed class Reader : IObjectReader
        {
            private readonly FileStream _stream;

            public Reader(FileStream stream)
            {
                _stream = stream;
                Length = stream.Length; // once: objects never change, and each FileStream.Length is an fstat
            }

            public long Length { get; }

            public int ReadAt(long offset, byte[] buffer, int index, int count)
            {
                if (offset >= Length) return 0;
                _stream.Position = offset;
                int done = 0;
                while (done < count)
                {
                    int n = _stream.Read(buffer, index + done, count - done);
                    if (n <= 0) break;
                    done += n;
                }
                return done;
            }

            public void Dispose() => _stream.Dispose();
        }

        /// <summary>A temporary file that becomes the object at <see cref="Commit"/>.</summary>
        internal sealed class Writer : IObjectWriter
        {
            private readonly FileStream _stream;
            private readonly string _temporary;
            private readonly string _path;
            private bool _committed;
            private bool _broken;
            private bool _ended;

            public Writer(FileStream stream, string temporary, string path)
            {
                _stream = stream;
                _temporary = temporary;
                _path = path;
            }

            public long Length { get; private set; }

            public void Write(byte[] buffer, int index, int count)
            {
                CheckUsable();
                try
                {
                    _stream.Write(buffer, index, count);
                }
                catch
                {
                    _broken = true; // how much of it reached the file is unknown: nothing more goes after it
                    throw;
                }
                Length += count;
            }

            public void Commit()
            {
                CheckUsable();
                try
                {
                    AtomicFile.Commit(_stream, _temporary, _path);
                }
                catch (IOException) when (File.Exists(_path))
                {
                    _broken = true;
                    throw new ObjectExistsException($"{_path} exists already; objects are put once.");
                }
                catch
                {
                    _broken = true;
                    throw;
                }
                _committed = true;
            }

            private void CheckUsable()
            {
                if (_committed || _broken || _ended) throw new InvalidOperationException($"{_path}: this write has ended; start another.");
            }

            /// <summary>
            /// Closes the temporary file and leaves it where it is, uncommitted: what a process killed in the middle of
            /// the write leaves (tests).
            /// </summary>
            internal void Abandon()
            {
                if (_committed || _ended) return;
                _ended = true;
                try { _stream.Dispose(); } catch (IOException) { }
            }

            public void Dispose()
            {
                if (_committed || _ended) return;
                _ended = true;
                try { _stream.Dispose(); } catch (IOException) { } // the last flush failing (disk full) changes nothing
                AtomicFile.TryDelete(_temporary);
            }
        }
    }
}
