using System;

namespace VmCheckpoint.Core.Disks.Vhdx
{
    /// <summary>Offsets, sizes and identifiers of the VHDX format (MS-VHDX 1.0).</summary>
    internal static class VhdxLayout
    {
        public const int KiB = 1024;
        public const int MiB = 1024 * 1024;

        // File type identifier, at offset 0 of the 1 MiB header section.
        public const long FileIdentifierOffset = 0;
        public const ulong FileSignature = 0x656C696678646876; // "vhdxfile"
        public const int CreatorOffset = 8;
        public const int CreatorLength = 512;

        // Headers: two copies, each a 4 KiB structure at the start of a 64 KiB slot.
        public const long Header1Offset = 64 * KiB;
        public const long Header2Offset = 128 * KiB;
        public const int HeaderSize = 4 * KiB;
        public const uint HeaderSignature = 0x64616568; // "head"
        public const int HeaderSignatureField = 0;
        public const int HeaderChecksumField = 4;
        public const int HeaderSequenceNumberField = 8;
        public const int HeaderFileWriteGuidField = 16;
        public const int HeaderDataWriteGuidField = 32;
        public const int HeaderLogGuidField = 48;
        public const int HeaderLogVersionField = 64;
        public const int HeaderVersionField = 66;
        public const int HeaderLogLengthField = 68;
        public const int HeaderLogOffsetField = 72;
        public const ushort SupportedVersion = 1;
        public const ushort SupportedLogVersion = 0;

        // Region tables: two copies of 64 KiB.
        public const long RegionTable1Offset = 192 * KiB;
        public const long RegionTable2Offset = 256 * KiB;
        public const int RegionTableSize = 64 * KiB;
        public const uint RegionTableSignature = 0x69676572; // "regi"
        public const int RegionSignatureField = 0;
        public const int RegionChecksumField = 4;
        public const int RegionEntryCountField = 8;
        public const int RegionTableHeaderSize = 16;
        public const int RegionEntrySize = 32;
        public const int RegionEntryGuidField = 0;
        public const int RegionEntryFileOffsetField = 16;
        public const int RegionEntryLengthField = 24;
        public const int RegionEntryRequiredField = 28;
        public const int MaxRegionEntries = 2047;

        /// <summary>End of the header section; regions, the log and blocks all lie at or after it.</summary>
        public const long HeaderSectionSize = 1 * MiB;
        public const long RegionAlignment = 1 * MiB;

        public static readonly Guid BatRegion = new Guid("2DC27766-F623-4200-9D64-115E9BFD4A08");
        public static readonly Guid MetadataRegion = new Guid("8B7CA206-4790-4B9A-B8FE-575F050F886E");

        // Metadata region: a 64 KiB table, then items.
        public const ulong MetadataSignature = 0x617461646174656D; // "metadata"
        public const int MetadataTableSize = 64 * KiB;
        public const int MetadataSignatureField = 0;
        public const int MetadataEntryCountField = 10;
        public const int MetadataTableHeaderSize = 32;
        public const int MetadataEntrySize = 32;
        public const int MetadataEntryItemIdField = 0;
        public const int MetadataEntryOffsetField = 16;
        public const int MetadataEntryLengthField = 20;
        public const int MetadataEntryFlagsField = 24;
        public const uint MetadataFlagIsUser = 1;
        public const uint MetadataFlagIsVirtualDisk = 2;
        public const uint MetadataFlagIsRequired = 4;
        public const int MaxMetadataEntries = 2047;
        public const int MaxMetadataItemLength = 1 * MiB;

        public static readonly Guid FileParametersItem = new Guid("CAA16737-FA36-4D43-B3B6-33F0AA44E76B");
        public static readonly Guid VirtualDiskSizeItem = new Guid("2FA54224-CD1B-4876-B211-5DBED83BF4B8");
        public static readonly Guid Page83DataItem = new Guid("BECA12AB-B2E6-4523-93EF-C309E000C746");
        public static readonly Guid LogicalSectorSizeItem = new Guid("8141BF1D-A96F-4709-BA47-F233A8FAAB5F");
        public static readonly Guid PhysicalSectorSizeItem = new Guid("CDA348C7-445D-4471-9CC9-E9885251C556");
        public static readonly Guid ParentLocatorItem = new Guid("A8D35F2D-B30B-454D-ABF7-D3D84834AB0C");
        public static readonly Guid VhdxParentLocatorType = new Guid("B04AEFB7-D19E-4A81-B789-25B8E9445913");

        public const int FileParametersBlockSizeField = 0;
        public const int FileParametersFlagsField = 4;
        public const int FileParametersLength = 8;
        public const uint FileParametersLeaveBlockAllocated = 1;
        public const uint FileParametersHasParent = 2;

        public const int ParentLocatorTypeField = 0;
        public const int ParentLocatorKeyValueCountField = 18;
        public const int ParentLocatorHeaderSize = 20;
        public const int ParentLocatorEntrySize = 12;
        public const int ParentLocatorKeyOffsetField = 0;
        public const int ParentLocatorValueOffsetField = 4;
        public const int ParentLocatorKeyLengthField = 8;
        public const int ParentLocatorValueLengthField = 10;

        public const int MinBlockSize = 1 * MiB;
        public const int MaxBlockSize = 256 * MiB;
        public const long MaxVirtualSize = 64L * 1024 * 1024 * 1024 * 1024; // 64 TiB
        public const long SectorsPerBitmapBlock = 1L << 23;
        public const int SectorBitmapBlockSize = 1 * MiB;

        // BAT entries: state in bits 0-2, file offset in MiB in bits 20-63.
        public const int BatEntrySize = 8;
        public const ulong BatStateMask = 0x7;
        public const int BatFileOffsetShift = 20;

        public const int PayloadNotPresent = 0;
        public const int PayloadUndefined = 1;
        public const int PayloadZero = 2;
        public const int PayloadUnmapped = 3;
        public const int PayloadFullyPresent = 6;
        public const int PayloadPartiallyPresent = 7;
        public const int BitmapNotPresent = 0;
        public const int BitmapPresent = 6;

        // Log entries (MS-VHDX 2.3): a 4 KiB-sector circular buffer.
        public const int LogSectorSize = 4 * KiB;
        public const uint LogEntrySignature = 0x65676F6C; // "loge"
        public const int LogEntrySignatureField = 0;
        public const int LogEntryChecksumField = 4;
        public const int LogEntryLengthField = 8;
        public const int LogEntryTailField = 12;
        public const int LogEntrySequenceNumberField = 16;
        public const int LogEntryDescriptorCountField = 24;
        public const int LogEntryLogGuidField = 32;
        public const int LogEntryFlushedFileOffsetField = 48;
        public const int LogEntryLastFileOffsetField = 56;
        public const int LogEntryHeaderSize = 64;
        public const int LogDescriptorSize = 32;
        public const uint LogZeroDescriptorSignature = 0x6F72657A; // "zero"
        public const uint LogDataDescriptorSignature = 0x63736564; // "desc"
        public const int LogDescriptorSignatureField = 0;
        public const int LogDescriptorTrailingBytesField = 4;  // data descriptor
        public const int LogDescriptorLeadingBytesField = 8;   // data descriptor
        public const int LogDescriptorZeroLengthField = 8;     // zero descriptor
        public const int LogDescriptorFileOffsetField = 16;
        public const int LogDescriptorSequenceNumberField = 24;
        public const uint LogDataSectorSignature = 0x61746164; // "data"
        public const int LogDataSectorSequenceHighField = 4;
        public const int LogDataSectorDataField = 8;
        public const int LogDataSectorDataLength = 4084;
        public const int LogDataSectorSequenceLowField = 4092;
        /// <summary>Larger logs are refused rather than held in memory (Hyper-V makes 1 MiB logs).</summary>
        public const long MaxLogLength = 256L * MiB;

        /// <summary>Parent chains deeper than this are refused (a guard against loops the path check misses).</summary>
        public const int MaxParentDepth = 64;

        /// <summary>Data blocks over the whole disk, and BAT entries needed for them.</summary>
        public static long DataBlockCount(long virtualSize, int blockSize) => (virtualSize + blockSize - 1) / blockSize;

        public static long ChunkRatio(int logicalSectorSize, int blockSize) => SectorsPerBitmapBlock * logicalSectorSize / blockSize;

        public static long BatEntryCount(long virtualSize, int blockSize, int logicalSectorSize, bool hasParent)
        {
            long dataBlocks = DataBlockCount(virtualSize, blockSize);
            long chunkRatio = ChunkRatio(logicalSectorSize, blockSize);
            if (hasParent)
            {
                long bitmapBlocks = (dataBlocks + chunkRatio - 1) / chunkRatio;
                return bitmapBlocks * (chunkRatio + 1);
            }
            return dataBlocks + (dataBlocks - 1) / chunkRatio;
        }

        public static long PayloadBatIndex(long block, long chunkRatio) => block + block / chunkRatio;

        public static long BitmapBatIndex(long chunk, long chunkRatio) => chunk * (chunkRatio + 1) + chunkRatio;

        public static long RoundUp(long value, long alignment) => (value + alignment - 1) / alignment * alignment;
    }
}
