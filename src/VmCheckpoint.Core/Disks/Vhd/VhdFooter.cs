using System;
using System.Buffers.Binary;
using static VmCheckpoint.Core.Disks.Vhd.VhdFormat;

namespace VmCheckpoint.Core.Disks.Vhd
{
    /// <summary>The hard disk footer of a VHD: the last 512 bytes of every VHD, copied at offset 0 by dynamic and differencing ones.</summary>
    internal sealed class VhdFooter
    {
        public uint Features { get; set; } = FeaturesReserved;
        public ulong DataOffset { get; set; } = NoDataOffset;
        public uint TimeStamp { get; set; }
        public string CreatorApplication { get; set; } = "";
        public uint CreatorVersion { get; set; }
        public uint CreatorHostOs { get; set; }
        public ulong OriginalSize { get; set; }
        public ulong CurrentSize { get; set; }
        public int Cylinders { get; set; }
        public int Heads { get; set; }
        public int SectorsPerTrack { get; set; }
        public int DiskType { get; set; }
        public Guid UniqueId { get; set; }
        public bool SavedState { get; set; }

        public long GeometrySectors => (long)Cylinders * Heads * SectorsPerTrack;

        /// <summary>
        /// The disk's size as qemu reads it (block/vpc.c): Virtual PC and qemu's own first writer sized a disk by its CHS
        /// geometry, Hyper-V, disk2vhd, XenServer, XenConverter and qemu with force_size by current_size; the largest
        /// geometry says nothing, so current_size it is. Whole sectors only.
        /// </summary>
        public long GuestSectors
        {
            get
            {
                bool byCurrentSize = CreatorApplication == "win " || CreatorApplication == "qem2" || CreatorApplication == "d2v "
                    || CreatorApplication == "CTXS" || CreatorApplication == "tap\0";
                if (byCurrentSize || GeometrySectors == MaxGeometrySectors) return (long)Math.Min(CurrentSize / SectorSize, long.MaxValue);
                return GeometrySectors;
            }
        }

        /// <summary>Parses a footer; null, with the reason, when it is not one (cookie, checksum, version or type).</summary>
        public static VhdFooter? TryParse(byte[] data, int index, out string reason)
        {
            if (!HasCookie(data, index, FooterCookie)) { reason = "no 'conectix' cookie"; return null; }
            ReadOnlySpan<byte> f = data.AsSpan(index, FooterSize);
            uint stored = BinaryPrimitives.ReadUInt32BigEndian(f.Slice(FooterChecksum));
            uint computed = Checksum(data, index, FooterSize, FooterChecksum);
            if (stored != computed) { reason = $"its checksum is 0x{stored:x8}, not 0x{computed:x8}"; return null; }
            uint version = BinaryPrimitives.ReadUInt32BigEndian(f.Slice(FooterFormatVersion));
            if (version >> 16 != FormatVersion >> 16) { reason = $"file format version 0x{version:x8} is not 1.x"; return null; }
            var footer = new VhdFooter
            {
                Features = BinaryPrimitives.ReadUInt32BigEndian(f.Slice(FooterFeatures)),
                DataOffset = BinaryPrimitives.ReadUInt64BigEndian(f.Slice(FooterDataOffset)),
                TimeStamp = BinaryPrimitives.ReadUInt32BigEndian(f.Slice(FooterTimeStamp)),
                CreatorApplication = Latin1(f.Slice(FooterCreatorApplication, 4)),
                CreatorVersion = BinaryPrimitives.ReadUInt32BigEndian(f.Slice(FooterCreatorVersion)),
                CreatorHostOs = BinaryPrimitives.ReadUInt32BigEndian(f.Slice(FooterCreatorHostOs)),
                OriginalSize = BinaryPrimitives.ReadUInt64BigEndian(f.Slice(FooterOriginalSize)),
                CurrentSize = BinaryPrimitives.ReadUInt64BigEndian(f.Slice(FooterCurrentSize)),
                Cylinders = BinaryPrimitives.ReadUInt16BigEndian(f.Slice(FooterCylinders)),
                Heads = f[FooterHeads],
                SectorsPerTrack = f[FooterSectorsPerTrack],
                DiskType = (int)Math.Min(int.MaxValue, BinaryPrimitives.ReadUInt32BigEndian(f.Slice(FooterDiskType))),
                UniqueId = ReadGuid(f.Slice(FooterUniqueId)),
                SavedState = f[FooterSavedState] != 0,
            };
            if (footer.DiskType != DiskTypeFixed && footer.DiskType != DiskTypeDynamic && footer.DiskType != DiskTypeDifferencing)
            {
                reason = $"disk type {footer.DiskType} is not fixed (2), dynamic (3) or differencing (4)";
                return null;
            }

            reason = "";
            return footer;
        }

        /// <summary>Writes the footer, checksum included, into 512 bytes at <paramref name="index"/>.</summary>
        public void WriteTo(byte[] data, int index)
        {
            Span<byte> f = data.AsSpan(index, FooterSize);
            f.Clear();
            for (int i = 0; i < CookieLength; i++) f[i] = (byte)FooterCookie[i];
            BinaryPrimitives.WriteUInt32BigEndian(f.Slice(FooterFeatures), Features);
            BinaryPrimitives.WriteUInt32BigEndian(f.Slice(FooterFormatVersion), FormatVersion);
            BinaryPrimitives.WriteUInt64BigEndian(f.Slice(FooterDataOffset), DataOffset);
            BinaryPrimitives.WriteUInt32BigEndian(f.Slice(FooterTimeStamp), TimeStamp);
            for (int i = 0; i < 4; i++) f[FooterCreatorApplication + i] = i < CreatorApplication.Length ? (byte)CreatorApplication[i] : (byte)' ';
            BinaryPrimitives.WriteUInt32BigEndian(f.Slice(FooterCreatorVersion), CreatorVersion);
            BinaryPrimitives.WriteUInt32BigEndian(f.Slice(FooterCreatorHostOs), CreatorHostOs);
            BinaryPrimitives.WriteUInt64BigEndian(f.Slice(FooterOriginalSize), OriginalSize);
            BinaryPrimitives.WriteUInt64BigEndian(f.Slice(FooterCurrentSize), CurrentSize);
            BinaryPrimitives.WriteUInt16BigEndian(f.Slice(FooterCylinders), (ushort)Cylinders);
            f[FooterHeads] = (byte)Heads;
            f[FooterSectorsPerTrack] = (byte)SectorsPerTrack;
            BinaryPrimitives.WriteUInt32BigEndian(f.Slice(FooterDiskType), (uint)DiskType);
            WriteGuid(UniqueId, f.Slice(FooterUniqueId));
            f[FooterSavedState] = SavedState ? (byte)1 : (byte)0;
            BinaryPrimitives.WriteUInt32BigEndian(f.Slice(FooterChecksum), Checksum(data, index, FooterSize, FooterChecksum));
        }

        /// <summary>
        /// The CHS geometry the specification's algorithm gives a disk of <paramref name="sectors"/> sectors; its size
        /// (cylinders × heads × sectors per track) may fall short of the disk's, never exceed it.
        /// </summary>
        public static (int Cylinders, int Heads, int SectorsPerTrack) Geometry(long sectors)
        {
            long total = Math.Min(sectors, MaxGeometrySectors);
            long perTrack, heads, cylinderTimesHeads;
            if (total >= 65535L * 16 * 63)
            {
                perTrack = 255;
                heads = 16;
                cylinderTimesHeads = total / perTrack;
            }
            else
            {
                perTrack = 17;
                cylinderTimesHeads = total / perTrack;
                heads = Math.Max(4, (cylinderTimesHeads + 1023) / 1024);
                if (cylinderTimesHeads >= heads * 1024 || heads > 16)
                {
                    perTrack = 31;
                    heads = 16;
                    cylinderTimesHeads = total / perTrack;
                }

                if (cylinderTimesHeads >= heads * 1024)
                {
                    perTrack = 63;
                    heads = 16;
                    cylinderTimesHeads = total / perTrack;
                }
            }

            return ((int)(cylinderTimesHeads / heads), (int)heads, (int)perTrack);
        }

        // The unique id is stored as its 16 bytes in order (RFC 4122 byte order), as Windows and qemu write it.
        internal static Guid ReadGuid(ReadOnlySpan<byte> bytes)
        {
            var b = bytes.Slice(0, 16).ToArray();
            return new Guid(BinaryPrimitives.ReadInt32BigEndian(b), BinaryPrimitives.ReadInt16BigEndian(b.AsSpan(4)),
                BinaryPrimitives.ReadInt16BigEndian(b.AsSpan(6)), b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
        }

        internal static void WriteGuid(Guid id, Span<byte> target)
        {
            byte[] le = id.ToByteArray(); // Data1..3 little endian, then 8 bytes in order
            target[0] = le[3]; target[1] = le[2]; target[2] = le[1]; target[3] = le[0];
            target[4] = le[5]; target[5] = le[4];
            target[6] = le[7]; target[7] = le[6];
            for (int i = 8; i < 16; i++) target[i] = le[i];
        }

        private static string Latin1(ReadOnlySpan<byte> bytes)
        {
            var chars = new char[bytes.Length];
            for (int i = 0; i < bytes.Length; i++) chars[i] = (char)bytes[i];
            return new string(chars);
        }
    }
}
