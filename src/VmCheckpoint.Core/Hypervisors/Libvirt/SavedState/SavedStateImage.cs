using System;
using System.IO;
using System.Linq;
using VmCheckpoint.Core.Disks;

namespace VmCheckpoint.Core.Hypervisors.Libvirt.SavedState
{
    /// <summary>How a libvirt save image is stored (page-addressed, see <see cref="PageAddressedMemory"/>) and put back.</summary>
    internal static class SavedStateImage
    {
        /// <summary>
        /// The save image as the checkpoint stores it: page-addressed where it can be decoded, else the file as it is
        /// (then <paramref name="note"/> says why: it still restores, it only deduplicates less).
        /// </summary>
        public static IDiskImage OpenForCheckpoint(string path, out string? note)
        {
            note = null;
            try
            {
                return PageAddressedMemory.Open(path);
            }
            catch (UnsupportedStreamException e)
            {
                note = $"The memory state is stored as QEMU wrote it, not page by page ({e.Message}): it deduplicates less.";
                return DiskImage.Open(path, DiskFormat.Raw);
            }
        }

        /// <summary>
        /// Turns a restored memory state back into the save image libvirt reads, in place, when it was stored
        /// page-addressed; a file stored as it was is left alone. Returns true when it rebuilt the file.
        /// </summary>
        public static bool Rebuild(string path) => Rebuild(path, null);

        /// <summary>
        /// As <see cref="Rebuild(string)"/>, with the domain XML the save image carries rewritten (a copy under a new
        /// name, its disks and files elsewhere); a file stored as it was gets only its XML rewritten. Returns true
        /// when the file changed.
        /// </summary>
        public static bool Rebuild(string path, Func<string, string>? rewriteXml)
        {
            var head = new byte[(int)PageAddressedMemory.Align];
            using (var probe = new FileStream(path, FileMode.Open, FileAccess.Read))
                StreamIO.ReadAtMost(probe, head, 0, head.Length);
            var layout = PageAddressedMemory.ReadDescriptor(head);
            if (layout is null)
            {
                if (rewriteXml is null) return false;
                Replace(path, (input, output) =>
                {
                    var r = new MigrationStream.Reader(input);
                    var w = new MigrationStream.Writer(output);
                    MigrationStream.CopyHeader(r, w, rewriteXml);
                    r.CopyRest(w);
                });
                return true;
            }
            var (blocks, skeletonOffset, skeletonLength) = layout.Value;
            string rebuilt = path + ".rebuilding";
            try
            {
                using (var image = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16))
                using (var output = new FileStream(rebuilt, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 20))
                {
                    if (image.Length < skeletonOffset + skeletonLength) throw new InvalidDataException($"{path}: the memory state is shorter than its descriptor says.");
                    var skeleton = new SubStream(image, skeletonOffset, skeletonLength);
                    var encoder = new Encoder(image, blocks.ToDictionary(b => b.Id, b => (b.Length, b.Offset)));
                    MigrationStream.Walk(skeleton, output, encoder, rewriteXml);
                    // No fsync: the file is read by libvirt at once and deleted after; a crash before that means a
                    // restore not done, run again from the repository, never a VM resumed from a torn file.
                    output.Flush();
                }
                File.Delete(path);
                File.Move(rebuilt, path);
                return true;
            }
            catch (UnsupportedStreamException e)
            {
                File.Delete(rebuilt);
                throw new InvalidDataException($"{path}: the stored memory state cannot be rebuilt ({e.Message}).");
            }
            catch
            {
                File.Delete(rebuilt);
                throw;
            }
        }

        /// <summary>Writes a new version of <paramref name="path"/> beside it, then puts it in its place.</summary>
        private static void Replace(string path, Action<Stream, Stream> copy)
        {
            string next = path + ".rewriting";
            try
            {
                using (var input = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16))
                using (var output = new FileStream(next, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 20))
                {
                    copy(input, output);
                    output.Flush(flushToDisk: true);
                }
                File.Delete(path);
                File.Move(next, path);
            }
            catch (UnsupportedStreamException e)
            {
                File.Delete(next);
                throw new InvalidDataException($"{path}: the stored memory state cannot be read ({e.Message}).");
            }
            catch
            {
                File.Delete(next);
                throw;
            }
        }

        /// <summary>Puts each page's payload back from the page-addressed image.</summary>
        private sealed class Encoder : MigrationStream.IVisitor
        {
            private readonly FileStream _image;
            private readonly System.Collections.Generic.Dictionary<string, (long Length, long Offset)> _blocks;
            private readonly byte[] _page = new byte[MigrationStream.PageSize];

            public Encoder(FileStream image, System.Collections.Generic.Dictionary<string, (long, long)> blocks)
            {
                _image = image;
                _blocks = blocks;
            }

            public void Block(string id, long length)
            {
                if (!_blocks.TryGetValue(id, out var b) || b.Length != length)
                    throw new UnsupportedStreamException($"RAM block '{id}' does not match the descriptor");
            }

            public void Page(string block, long offset, MigrationStream.Reader input, MigrationStream.Writer output)
            {
                var b = _blocks[block];
                if (offset < 0 || offset + MigrationStream.PageSize > b.Length) throw new UnsupportedStreamException($"a page past the end of RAM block '{block}'");
                _image.Position = b.Offset + offset;
                if (StreamIO.ReadAtMost(_image, _page, 0, _page.Length) != _page.Length) throw new UnsupportedStreamException("a page past the end of the stored state");
                output.Write(_page, 0, _page.Length);
            }

            public void ZeroPage(string block, long offset) { }
        }

        /// <summary>A read-only window of a stream.</summary>
        private sealed class SubStream : Stream
        {
            private readonly Stream _inner;
            private readonly long _start, _length;
            private long _position;

            public SubStream(Stream inner, long start, long length)
            {
                _inner = inner;
                _start = start;
                _length = length;
            }

            public override bool CanRead => true;
            public override bool CanSeek => false;
            public override bool CanWrite => false;
            public override long Length => _length;
            public override long Position { get => _position; set => throw new NotSupportedException(); }

            public override int Read(byte[] buffer, int offset, int count)
            {
                int n = (int)Math.Min(count, _length - _position);
                if (n <= 0) return 0;
                _inner.Position = _start + _position;
                n = _inner.Read(buffer, offset, n);
                _position += n;
                return n;
            }

            public override void Flush() { }
            public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
            public override void SetLength(long value) => throw new NotSupportedException();
            public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
        }
    }
}
