using System;
using System.Buffers.Binary;
using System.IO;
using System.Text;
using static VmCheckpoint.Core.Disks.Qcow2.Qcow2Format;

namespace VmCheckpoint.Core.Disks.Qcow2
{
    /// <summary>The qcow2 header and its extensions, checked field by field as it is parsed.</summary>
    internal sealed class Qcow2Header
    {
        private Qcow2Header() { }

        public int Version { get; private set; }
        public int ClusterBits { get; private set; }
        public int ClusterSize => 1 << ClusterBits;
        public long Size { get; private set; }
        public int L1Size { get; private set; }
        public long L1TableOffset { get; private set; }
        public ulong IncompatibleFeatures { get; private set; }
        public int RefcountOrder { get; private set; }
        public int HeaderLength { get; private set; }
        public byte CompressionType { get; private set; }
        public string? BackingFileName { get; private set; }
        public string? BackingFormat { get; private set; }
        public ulong AutoclearFeatures { get; private set; }
        /// <summary>The bitmaps extension as the header gives it (checked when the directory is read), or zeros.</summary>
        public int BitmapCount { get; private set; }
        public long BitmapDirectorySize { get; private set; }
        public long BitmapDirectoryOffset { get; private set; }
        public bool HasBitmapsExtension { get; private set; }
        /// <summary>The external data file's name as the image records it (incompatible bit 2), or null.</summary>
        public string? DataFileName { get; private set; }
        public long RefcountTableOffset { get; private set; }
        public long RefcountTableClusters { get; private set; }
        public long SnapshotCount { get; private set; }
        public long SnapshotsOffset { get; private set; }

        public bool IsDirty => (IncompatibleFeatures & IncompatDirty) != 0;
        /// <summary>qemu found its metadata inconsistent and stopped writing it; it may still be read (qemu reads it read-only).</summary>
        public bool IsMarkedCorrupt => (IncompatibleFeatures & IncompatCorrupt) != 0;
        /// <summary>Guest clusters live in an external data file, at their guest offsets (incompatible bit 2).</summary>
        public bool HasDataFile => (IncompatibleFeatures & IncompatExternalDataFile) != 0;
        /// <summary>The external data file is itself a consistent raw image (autoclear bit 1).</summary>
        public bool HasRawDataFile => HasDataFile && (AutoclearFeatures & AutoclearRawExternalData) != 0;
        public bool HasExtendedL2 => (IncompatibleFeatures & IncompatExtendedL2) != 0;
        public int L2EntryBytes => HasExtendedL2 ? ExtendedL2EntrySize : L2EntrySize;
        /// <summary>log2 of the number of entries in one L2 table.</summary>
        public int L2Bits => ClusterBits - (HasExtendedL2 ? 4 : 3);

        /// <summary>Reads and validates the header in the first cluster of <paramref name="file"/>.</summary>
        public static Qcow2Header Read(string path, Stream file)
        {
            long fileLength = file.Length;
            var fixedPart = new byte[V3HeaderLengthWithCompressionType];
            file.Position = 0;
            int got = StreamIO.ReadAtMost(file, fixedPart, 0, fixedPart.Length);
            if (got < V2HeaderLength)
                throw Corrupt(path, $"file is {fileLength} bytes, too short for a qcow2 header ({V2HeaderLength} bytes)");

            ReadOnlySpan<byte> h = fixedPart;
            if (BinaryPrimitives.ReadUInt32BigEndian(h.Slice(MagicOffset)) != Magic)
                throw Corrupt(path, "magic is not QFI\\xfb");

            var header = new Qcow2Header();
            uint version = BinaryPrimitives.ReadUInt32BigEndian(h.Slice(VersionOffset));
            if (version != 2 && version != 3)
                throw Corrupt(path, $"version {version} is not supported (2 or 3)");
            header.Version = (int)version;

            uint clusterBits = BinaryPrimitives.ReadUInt32BigEndian(h.Slice(ClusterBitsOffset));
            if (clusterBits < MinClusterBits || clusterBits > MaxClusterBits)
                throw Corrupt(path, $"cluster_bits {clusterBits} is outside {MinClusterBits}..{MaxClusterBits}");
            header.ClusterBits = (int)clusterBits;
            int clusterSize = header.ClusterSize;

            ulong size = BinaryPrimitives.ReadUInt64BigEndian(h.Slice(SizeOffset));
            if (size > MaxVirtualSize)
                throw Corrupt(path, $"virtual size {size} is larger than 2^56 bytes");
            header.Size = (long)size;

            uint cryptMethod = BinaryPrimitives.ReadUInt32BigEndian(h.Slice(CryptMethodOffset));
            if (cryptMethod != 0)
                throw Corrupt(path, $"image is encrypted (crypt_method {cryptMethod}); encrypted images are not supported");

            if (header.Version == 2)
            {
                header.HeaderLength = V2HeaderLength;
                header.RefcountOrder = DefaultRefcountOrder;
            }
            else
            {
                if (got < V3MinHeaderLength)
                    throw Corrupt(path, $"file is {fileLength} bytes, too short for a version 3 header ({V3MinHeaderLength} bytes)");
                header.IncompatibleFeatures = BinaryPrimitives.ReadUInt64BigEndian(h.Slice(IncompatibleFeaturesOffset));
                header.AutoclearFeatures = BinaryPrimitives.ReadUInt64BigEndian(h.Slice(AutoclearFeaturesOffset));
                uint refcountOrder = BinaryPrimitives.ReadUInt32BigEndian(h.Slice(RefcountOrderOffset));
                if (refcountOrder > MaxRefcountOrder)
                    throw Corrupt(path, $"refcount_order {refcountOrder} is larger than {MaxRefcountOrder}");
                header.RefcountOrder = (int)refcountOrder;
                uint headerLength = BinaryPrimitives.ReadUInt32BigEndian(h.Slice(HeaderLengthOffset));
                // The specification asks for a multiple of 8; qemu takes any length in range, and so does this reader.
                if (headerLength < V3MinHeaderLength || headerLength > clusterSize)
                    throw Corrupt(path, $"header_length {headerLength} must be between {V3MinHeaderLength} and the cluster size {clusterSize}");
                header.HeaderLength = (int)headerLength;
                if (headerLength > CompressionTypeOffset)
                {
                    if (got <= CompressionTypeOffset)
                        throw Corrupt(path, "file ends inside the header");
                    header.CompressionType = h[CompressionTypeOffset];
                }
            }

            header.CheckFeatures(path);
            // Read as they are; whether they make sense is checked later, as warnings (Qcow2Health): the guest's data does not depend on them.
            header.RefcountTableOffset = (long)Math.Min(long.MaxValue, BinaryPrimitives.ReadUInt64BigEndian(h.Slice(RefcountTableOffsetOffset)));
            header.RefcountTableClusters = BinaryPrimitives.ReadUInt32BigEndian(h.Slice(RefcountTableClustersOffset));
            header.SnapshotCount = BinaryPrimitives.ReadUInt32BigEndian(h.Slice(NbSnapshotsOffset));
            header.SnapshotsOffset = (long)Math.Min(long.MaxValue, BinaryPrimitives.ReadUInt64BigEndian(h.Slice(SnapshotsOffsetOffset)));

            uint l1Size = BinaryPrimitives.ReadUInt32BigEndian(h.Slice(L1SizeOffset));
            ulong l1Offset = BinaryPrimitives.ReadUInt64BigEndian(h.Slice(L1TableOffsetOffset));
            header.CheckL1(path, l1Size, l1Offset, fileLength);

            // Extensions and the backing file name both live in the first cluster.
            int firstClusterLength = (int)Math.Min(clusterSize, fileLength);
            var firstCluster = new byte[firstClusterLength];
            file.Position = 0;
            if (StreamIO.ReadAtMost(file, firstCluster, 0, firstClusterLength) != firstClusterLength)
                throw Corrupt(path, "file ends inside the first cluster");

            ulong backingOffset = BinaryPrimitives.ReadUInt64BigEndian(h.Slice(BackingFileOffsetOffset));
            uint backingSize = BinaryPrimitives.ReadUInt32BigEndian(h.Slice(BackingFileSizeOffset));
            header.ReadExtensions(path, firstCluster, backingOffset);
            header.ReadBackingFileName(path, firstCluster, backingOffset, backingSize);
            if (header.HasDataFile && header.DataFileName == null)
                throw Corrupt(path, "image keeps its data in an external data file but names none (no data file name extension); qemu needs it given as an option, and so would this reader");
            if (header.HasRawDataFile && header.BackingFileName != null)
                throw Corrupt(path, "image has both a raw external data file and a backing file, which the format forbids");
            return header;
        }

        private void CheckFeatures(string path)
        {
            ulong unknown = IncompatibleFeatures & ~IncompatKnown;
            if (unknown != 0)
                throw Corrupt(path, $"unknown incompatible feature bits 0x{unknown:x}; refusing to guess their meaning");

            bool typeBit = (IncompatibleFeatures & IncompatCompressionType) != 0;
            if (CompressionType != CompressionZlib && CompressionType != CompressionZstd)
                throw Corrupt(path, $"compression_type {CompressionType} is unknown (0 zlib, 1 zstd)");
            if (typeBit != (CompressionType != CompressionZlib))
                throw Corrupt(path, $"compression_type {CompressionType} disagrees with incompatible feature bit 3");
            if (HasExtendedL2 && ClusterBits < MinExtendedL2ClusterBits)
                throw Corrupt(path, $"extended L2 entries need clusters of at least {1 << MinExtendedL2ClusterBits} bytes, not {ClusterSize}");
        }

        private void CheckL1(string path, uint l1Size, ulong l1Offset, long fileLength)
        {
            if ((ulong)l1Size * L1EntrySize > (ulong)MaxL1TableBytes)
                throw Corrupt(path, $"l1_size {l1Size} makes an L1 table larger than {MaxL1TableBytes} bytes");
            // One L1 entry maps one L2 table's worth of guest bytes.
            int shift = ClusterBits + L2Bits;
            long needed = (long)((((ulong)Size) + (1UL << shift) - 1) >> shift);
            if (l1Size < needed)
                throw Corrupt(path, $"l1_size {l1Size} is too small for the virtual size {Size} (needs {needed})");
            if (l1Offset % (ulong)ClusterSize != 0)
                throw Corrupt(path, $"l1_table_offset {l1Offset} is not aligned to the cluster size {ClusterSize}");
            if (l1Size > 0 && (l1Offset == 0 || l1Offset > (ulong)fileLength || (ulong)fileLength - l1Offset < (ulong)l1Size * L1EntrySize))
                throw Corrupt(path, $"L1 table at {l1Offset} ({l1Size} entries) is outside the file ({fileLength} bytes)");
            L1Size = (int)l1Size;
            L1TableOffset = (long)l1Offset;
        }

        private void ReadExtensions(string path, byte[] firstCluster, ulong backingOffset)
        {
            // Extensions end at the backing file name if there is one, else at the end of the cluster.
            long end = backingOffset != 0 && backingOffset < (ulong)firstCluster.Length ? (long)backingOffset : firstCluster.Length;
            long pos = HeaderLength;
            while (pos + ExtensionHeaderLength <= end)
            {
                uint type = BinaryPrimitives.ReadUInt32BigEndian(firstCluster.AsSpan((int)pos));
                uint length = BinaryPrimitives.ReadUInt32BigEndian(firstCluster.AsSpan((int)pos + 4));
                if (type == ExtensionEnd) return;
                long dataStart = pos + ExtensionHeaderLength;
                if (length > end - dataStart)
                    throw Corrupt(path, $"header extension 0x{type:x8} at {pos} claims {length} bytes, past the end of the header area ({end})");
                if (type == ExtensionDataFile)
                {
                    if (length == 0 || length > MaxBackingFileNameLength)
                        throw Corrupt(path, $"external data file name extension has length {length} (1..{MaxBackingFileNameLength})");
                    DataFileName = DecodeName(path, firstCluster, (int)dataStart, (int)length, "external data file name");
                }
                else if (type == ExtensionBackingFormat)
                {
                    if (length == 0 || length > MaxBackingFormatLength)
                        throw Corrupt(path, $"backing format extension has length {length} (1..{MaxBackingFormatLength})");
                    BackingFormat = DecodeName(path, firstCluster, (int)dataStart, (int)length, "backing format");
                }
                else if (type == ExtensionBitmaps && length >= BitmapsExtensionLength)
                {
                    // Only recorded here: the bitmaps say nothing about the guest's data, so a bad one makes change
                    // tracking unavailable (Qcow2Bitmaps), never the image unreadable.
                    var e = firstCluster.AsSpan((int)dataStart);
                    HasBitmapsExtension = true;
                    BitmapCount = (int)Math.Min(int.MaxValue, BinaryPrimitives.ReadUInt32BigEndian(e));
                    BitmapDirectorySize = (long)Math.Min(long.MaxValue, BinaryPrimitives.ReadUInt64BigEndian(e.Slice(8)));
                    BitmapDirectoryOffset = (long)Math.Min(long.MaxValue, BinaryPrimitives.ReadUInt64BigEndian(e.Slice(16)));
                }

                // Unknown extensions are optional by definition; skip them.
                long padded = (length + ExtensionAlignment - 1) / ExtensionAlignment * ExtensionAlignment;
                pos = dataStart + padded;
            }
        }

        private void ReadBackingFileName(string path, byte[] firstCluster, ulong offset, uint size)
        {
            if (offset == 0) return;
            if (size == 0 || size > MaxBackingFileNameLength)
                throw Corrupt(path, $"backing_file_size {size} is outside 1..{MaxBackingFileNameLength}");
            if (offset < (ulong)HeaderLength || offset + size > (ulong)firstCluster.Length)
                throw Corrupt(path, $"backing file name at {offset} ({size} bytes) is outside the header cluster");
            BackingFileName = DecodeName(path, firstCluster, (int)offset, (int)size, "backing file name");
        }

        private static string DecodeName(string path, byte[] data, int index, int count, string what)
        {
            string name;
            try
            {
                name = new UTF8Encoding(false, throwOnInvalidBytes: true).GetString(data, index, count);
            }
            catch (DecoderFallbackException)
            {
                throw Corrupt(path, $"{what} is not valid UTF-8");
            }

            if (name.IndexOf('\0') >= 0)
                throw Corrupt(path, $"{what} contains a NUL character");
            return name;
        }

        private static CorruptImageException Corrupt(string path, string message) => new CorruptImageException(path, message);
    }
}
