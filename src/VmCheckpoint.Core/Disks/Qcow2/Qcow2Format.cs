namespace VmCheckpoint.Core.Disks.Qcow2
{
    /// <summary>Field locations, flags and limits of qcow2 (qemu docs/interop/qcow2.txt).</summary>
    internal static class Qcow2Format
    {
        public const int MagicLength = 4;
        public const uint Magic = 0x514649fb; // "QFI\xfb"

        // Header fields, version 2 (big endian).
        public const int MagicOffset = 0;
        public const int VersionOffset = 4;
        public const int BackingFileOffsetOffset = 8;
        public const int BackingFileSizeOffset = 16;
        public const int ClusterBitsOffset = 20;
        public const int SizeOffset = 24;
        public const int CryptMethodOffset = 32;
        public const int L1SizeOffset = 36;
        public const int L1TableOffsetOffset = 40;
        public const int RefcountTableOffsetOffset = 48;
        public const int RefcountTableClustersOffset = 56;
        public const int NbSnapshotsOffset = 60;
        public const int SnapshotsOffsetOffset = 64;
        public const int V2HeaderLength = 72;

        // Refcount table and snapshot table limits (qemu's QCOW_MAX_REFTABLE_SIZE, QCOW_MAX_SNAPSHOTS, ...).
        public const long MaxRefcountTableBytes = 8L * 1024 * 1024;
        public const ulong RefcountTableReservedMask = 0x1ffUL;
        public const int MaxSnapshots = 65536;
        public const int MaxSnapshotExtraData = 1024;
        public const long MaxSnapshotTableBytes = 64L * 1024 * 1024;
        public const int SnapshotFixedLength = 40;

        // Version 3 additions.
        public const int IncompatibleFeaturesOffset = 72;
        public const int CompatibleFeaturesOffset = 80;
        public const int AutoclearFeaturesOffset = 88;
        public const int RefcountOrderOffset = 96;
        public const int HeaderLengthOffset = 100;
        public const int V3MinHeaderLength = 104;
        public const int CompressionTypeOffset = 104;
        public const int V3HeaderLengthWithCompressionType = 112;

        public const int MinClusterBits = 9;
        public const int MaxClusterBits = 21;
        public const int MinExtendedL2ClusterBits = 14;
        public const int MaxRefcountOrder = 6;
        public const int DefaultRefcountOrder = 4;
        public const int MaxBackingFileNameLength = 1023;
        public const int MaxBackingFormatLength = 15;

        /// <summary>qemu refuses L1 tables over 32 MiB; so do we, before allocating one.</summary>
        public const long MaxL1TableBytes = 32L * 1024 * 1024;
        /// <summary>Guest sizes beyond 2^56 cannot be addressed by 56-bit host offsets anyway.</summary>
        public const long MaxVirtualSize = 1L << 56;

        // Incompatible feature bits.
        public const ulong IncompatDirty = 1UL << 0;
        public const ulong IncompatCorrupt = 1UL << 1;
        public const ulong IncompatExternalDataFile = 1UL << 2;
        public const ulong IncompatCompressionType = 1UL << 3;
        public const ulong IncompatExtendedL2 = 1UL << 4;
        public const ulong IncompatKnown = IncompatDirty | IncompatCorrupt | IncompatExternalDataFile | IncompatCompressionType | IncompatExtendedL2;

        public const byte CompressionZlib = 0;
        public const byte CompressionZstd = 1;

        // Header extensions: 4-byte type, 4-byte length, data padded to 8 bytes.
        public const int ExtensionHeaderLength = 8;
        public const int ExtensionAlignment = 8;
        public const uint ExtensionEnd = 0x00000000;
        public const uint ExtensionBackingFormat = 0xe2792aca;
        public const uint ExtensionBitmaps = 0x23852875;
        public const uint ExtensionDataFile = 0x44415441; // "DATA": the external data file's name

        // Bitmaps extension: nb_bitmaps (4), reserved (4), bitmap_directory_size (8), bitmap_directory_offset (8).
        public const int BitmapsExtensionLength = 24;
        /// <summary>Autoclear bit 0: the bitmaps extension is consistent. A writer that does not know bitmaps clears it.</summary>
        public const ulong AutoclearBitmaps = 1UL << 0;
        /// <summary>Autoclear bit 1: the external data file is a consistent raw image by itself.</summary>
        public const ulong AutoclearRawExternalData = 1UL << 1;
        /// <summary>qemu's own limits (QCOW2_MAX_BITMAPS, QCOW2_MAX_BITMAP_DIRECTORY_SIZE): nothing larger is real.</summary>
        public const int MaxBitmaps = 65535;
        public const long MaxBitmapDirectoryBytes = 1024L * MaxBitmaps;

        // Bitmap directory entry (docs/interop/qcow2.txt, "Bitmap directory").
        public const int BitmapEntryTableOffset = 0;
        public const int BitmapEntryTableSize = 8;
        public const int BitmapEntryFlags = 12;
        public const int BitmapEntryType = 16;
        public const int BitmapEntryGranularityBits = 17;
        public const int BitmapEntryNameSize = 18;
        public const int BitmapEntryExtraDataSize = 20;
        public const int BitmapEntryFixedLength = 24;
        public const uint BitmapFlagInUse = 1u << 0;
        public const uint BitmapFlagAuto = 1u << 1;
        public const uint BitmapFlagExtraDataCompatible = 1u << 2;
        public const byte BitmapTypeDirty = 1;
        public const int MinBitmapGranularityBits = 9;
        public const int MaxBitmapGranularityBits = 31;
        public const int MaxBitmapNameLength = 1023;
        /// <summary>Bitmap table entry: bits 9-55 the data cluster; with no cluster, bit 0 says all ones.</summary>
        public const ulong BitmapTableAllOnes = 1UL << 0;
        public const ulong BitmapTableReservedMask = 0xff000000000001feUL;

        // L1 and L2 entries.
        public const int L1EntrySize = 8;
        public const int L2EntrySize = 8;
        public const int ExtendedL2EntrySize = 16;
        public const ulong OffsetMask = 0x00fffffffffffe00UL; // bits 9-55
        public const ulong FlagCopied = 1UL << 63;
        public const ulong FlagCompressed = 1UL << 62;
        public const ulong FlagZero = 1UL << 0;
        public const int SubclustersPerCluster = 32;
        public const int CompressedSectorSize = 512;

        public static bool HasMagic(byte[] head) =>
            head.Length >= MagicLength &&
            ((uint)head[0] << 24 | (uint)head[1] << 16 | (uint)head[2] << 8 | head[3]) == Magic;
    }
}
