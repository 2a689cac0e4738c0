using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Text;
using VmCheckpoint.Core.Disks;

namespace VmCheckpoint.Core.Hypervisors.Libvirt.SavedState
{
    /// <summary>
    /// A libvirt save image seen as a disk whose RAM pages sit at their guest addresses, so that memory deduplicates
    /// like a disk: a page unchanged since the last checkpoint lands in the same block with the same bytes, however
    /// many zero pages the stream skipped before it (the stream itself shifts with every one).
    /// Layout, each part starting on a 1 MiB boundary:
    ///   0      descriptor: magic "VMCKMEM1", version, the RAM blocks (id, length, offset) and where the skeleton is;
    ///   1 MiB  each RAM block's pages at their offsets (the last value the stream gave each page; zero pages are holes);
    ///   then   the skeleton: the whole save image with every page payload taken out (headers, device state).
    /// <see cref="SavedStateImage.Rebuild"/> puts the payloads back into the skeleton.
    /// </summary>
    internal sealed class PageAddressedMemory : IDiskImage
    {
        public static readonly byte[] Magic = Encoding.ASCII.GetBytes("VMCKMEM1");
        public const int Version = 1;
        public const long Align = 1 << 20;
        private const int PageSize = MigrationStream.PageSize;

        private readonly FileStream _stream;
        private readonly byte[] _descriptor;
        private readonly byte[] _skeleton;
        private readonly List<RamBlock> _blocks;
        private readonly long _skeletonOffset;

        internal sealed class RamBlock
        {
            public RamBlock(string id, long length, long offset)
            {
                Id = id;
                Length = length;
                Offset = offset;
                Pages = Enumerable.Repeat(-1L, (int)(length / PageSize)).ToArray();
            }

            public string Id { get; }
            public long Length { get; }
            /// <summary>Where the block starts in this image.</summary>
            public long Offset { get; }
            /// <summary>Per page: where its last payload starts in the save image, or -1 for a zero page.</summary>
            public long[] Pages { get; }
        }

        private PageAddressedMemory(string path, FileStream stream, List<RamBlock> blocks, byte[] skeleton)
        {
            Path = path;
            _stream = stream;
            _blocks = blocks;
            _skeleton = skeleton;
            long ramEnd = blocks.Count == 0 ? Align : blocks.Max(b => b.Offset + b.Length);
            _skeletonOffset = AlignUp(ramEnd);
            _descriptor = Describe(blocks, _skeletonOffset, skeleton.Length);
            VirtualSize = _skeletonOffset + skeleton.Length;
        }

        public string Path { get; }
        public DiskFormat Format => DiskFormat.Raw;
        public long VirtualSize { get; }

        /// <summary>Decodes the save image at <paramref name="path"/>; throws <see cref="UnsupportedStreamException"/> for what it cannot.</summary>
        public static PageAddressedMemory Open(string path)
        {
            var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
            try
            {
                var decoder = new Decoder();
                var skeleton = new MemoryStream();
                stream.Position = 0;
                MigrationStream.Walk(stream, skeleton, decoder);
                return new PageAddressedMemory(path, stream, decoder.Blocks, skeleton.ToArray());
            }
            catch
            {
                stream.Dispose();
                throw;
            }
        }

        public IEnumerable<DiskExtent> GetDataExtents(long offset, long length)
        {
            // Runs of data pages, not one extent a page: a 4 GiB guest has a million pages.
            var all = new List<DiskExtent> { new DiskExtent(0, _descriptor.Length) };
            foreach (var b in _blocks)
            {
                for (int p = 0; p < b.Pages.Length;)
                {
                    if (b.Pages[p] < 0) { p++; continue; }
                    int start = p;
                    while (p < b.Pages.Length && b.Pages[p] >= 0) p++;
                    all.Add(new DiskExtent(b.Offset + (long)start * PageSize, (long)(p - start) * PageSize));
                }
            }
            if (_skeleton.Length > 0) all.Add(new DiskExtent(_skeletonOffset, _skeleton.Length));
            long end = offset + length;
            var clipped = all.Where(e => e.End > offset && e.Offset < end)
                .Select(e => new DiskExtent(Math.Max(e.Offset, offset), Math.Min(e.End, end) - Math.Max(e.Offset, offset)));
            return DiskExtents.Merge(clipped);
        }

        public void Read(long offset, byte[] buffer, int index, int count)
        {
            if (offset < 0 || count < 0 || offset + count > VirtualSize) throw new ArgumentOutOfRangeException(nameof(offset));
            Array.Clear(buffer, index, count);
            Overlay(0, _descriptor, offset, buffer, index, count);
            Overlay(_skeletonOffset, _skeleton, offset, buffer, index, count);
            long end = offset + count;
            foreach (var b in _blocks)
            {
                if (b.Offset >= end || b.Offset + b.Length <= offset) continue;
                long from = Math.Max(offset, b.Offset), to = Math.Min(end, b.Offset + b.Length);
                for (long at = from; at < to;)
                {
                    int page = (int)((at - b.Offset) / PageSize);
                    long pageStart = b.Offset + (long)page * PageSize;
                    int within = (int)(at - pageStart);
                    int n = (int)Math.Min(PageSize - within, to - at);
                    long source = b.Pages[page];
                    if (source >= 0)
                    {
                        _stream.Position = source + within;
                        if (StreamIO.ReadAtMost(_stream, buffer, index + (int)(at - offset), n) != n)
                            throw new InvalidDataException($"{Path} was cut short while it was read.");
                    }
                    at += n;
                }
            }
        }

        public void Dispose() => _stream.Dispose();

        private static void Overlay(long partOffset, byte[] part, long offset, byte[] buffer, int index, int count)
        {
            long from = Math.Max(offset, partOffset), to = Math.Min(offset + count, partOffset + part.Length);
            if (from < to) Buffer.BlockCopy(part, (int)(from - partOffset), buffer, index + (int)(from - offset), (int)(to - from));
        }

        internal static long AlignUp(long value) => (value + Align - 1) / Align * Align;

        private static byte[] Describe(List<RamBlock> blocks, long skeletonOffset, long skeletonLength)
        {
            var ms = new MemoryStream();
            var w = new BinaryWriter(ms);
            w.Write(Magic);
            w.Write(Version);
            w.Write(blocks.Count);
            w.Write(skeletonOffset);
            w.Write(skeletonLength);
            foreach (var b in blocks)
            {
                var id = Encoding.UTF8.GetBytes(b.Id);
                w.Write((ushort)id.Length);
                w.Write(id);
                w.Write(b.Length);
                w.Write(b.Offset);
            }
            w.Flush();
            if (ms.Length > Align) throw new UnsupportedStreamException("too many RAM blocks to describe");
            return ms.ToArray();
        }

        /// <summary>Reads a descriptor written by <see cref="Describe"/>: the blocks and the skeleton's place, or null when it is none.</summary>
        internal static (List<(string Id, long Length, long Offset)> Blocks, long SkeletonOffset, long SkeletonLength)? ReadDescriptor(byte[] head)
        {
            if (head.Length < 32 || !head.Take(Magic.Length).SequenceEqual(Magic)) return null;
            var r = new BinaryReader(new MemoryStream(head));
            r.ReadBytes(Magic.Length);
            if (r.ReadInt32() != Version) throw new InvalidDataException("A memory state of an unknown layout version.");
            int count = r.ReadInt32();
            long skeletonOffset = r.ReadInt64(), skeletonLength = r.ReadInt64();
            if (count < 0 || count > 4096 || skeletonOffset < Align || skeletonLength < 0) throw new InvalidDataException("A damaged memory state descriptor.");
            var blocks = new List<(string, long, long)>();
            for (int i = 0; i < count; i++)
            {
                int n = r.ReadUInt16();
                string id = Encoding.UTF8.GetString(r.ReadBytes(n));
                long length = r.ReadInt64(), offset = r.ReadInt64();
                if (length < 0 || offset < Align || offset + length > skeletonOffset) throw new InvalidDataException($"A damaged memory state descriptor (block {id}).");
                blocks.Add((id, length, offset));
            }
            return (blocks, skeletonOffset, skeletonLength);
        }

        /// <summary>Takes page payloads out of the stream and remembers where each page's last one is.</summary>
        private sealed class Decoder : MigrationStream.IVisitor
        {
            private readonly byte[] _scratch = new byte[PageSize];
            private long _next = Align;
            public List<RamBlock> Blocks { get; } = new List<RamBlock>();

            public void Block(string id, long length)
            {
                Blocks.Add(new RamBlock(id, length, _next));
                _next = AlignUp(_next + length);
            }

            public void Page(string block, long offset, MigrationStream.Reader input, MigrationStream.Writer output)
            {
                var b = Find(block, offset);
                b.Pages[offset / PageSize] = input.Position;
                input.Read(_scratch, 0, PageSize); // out of the skeleton
            }

            public void ZeroPage(string block, long offset) => Find(block, offset).Pages[offset / PageSize] = -1;

            private RamBlock Find(string block, long offset)
            {
                var b = Blocks.FirstOrDefault(x => x.Id == block) ?? throw new UnsupportedStreamException($"a page of unknown RAM block '{block}'");
                if (offset < 0 || offset >= b.Length) throw new UnsupportedStreamException($"a page at {offset} past the end of RAM block '{block}'");
                return b;
            }
        }
    }
}
