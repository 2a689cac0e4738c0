namespace VmCheckpoint.Core.Disks.Vhd
{
    /// <summary>
    /// Field locations, codes and limits of VHD, Virtual PC's and Hyper-V's older format (Microsoft's "Virtual Hard Disk
    /// Image Format Specification"). Every number in it is big endian.
    /// </summary>
    internal static class VhdFormat
    {
        public const int SectorSize = 512;
        public const int FooterSize = 512;
        public const int DynamicHeaderSize = 1024;

        public const string FooterCookie = "conectix";
        public const string DynamicHeaderCookie = "cxsparse";
        public const int CookieLength = 8;

        // Hard disk footer.
        public const int FooterFeatures = 8;
        public const int FooterFormatVersion = 12;
        public const int FooterDataOffset = 16;
        public const int FooterTimeStamp = 24;
        public const int FooterCreatorApplication = 28;
        public const int FooterCreatorVersion = 32;
        public const int FooterCreatorHostOs = 36;
        public const int FooterOriginalSize = 40;
        public const int FooterCurrentSize = 48;
        public const int FooterCylinders = 56;
        public const int FooterHeads = 58;
        public const int FooterSectorsPerTrack = 59;
        public const int FooterDiskType = 60;
        public const int FooterChecksum = 64;
        public const int FooterUniqueId = 68;
        public const int FooterSavedState = 84;

        // Dynamic disk header.
        public const int HeaderDataOffset = 8;
        public const int HeaderTableOffset = 16;
        public const int HeaderVersion = 24;
        public const int HeaderMaxTableEntries = 28;
        public const int HeaderBlockSize = 32;
        public const int HeaderChecksum = 36;
        public const int HeaderParentUniqueId = 40;
        public const int HeaderParentTimeStamp = 56;
        public const int HeaderParentUnicodeName = 64;
        public const int ParentUnicodeNameLength = 512;
        public const int HeaderParentLocators = 576;
        public const int ParentLocatorCount = 8;
        public const int ParentLocatorSize = 24;
        // Parent locator entry: platform code (4), data space (4), data length (4), reserved (4), data offset (8).
        public const int LocatorPlatformCode = 0;
        public const int LocatorDataSpace = 4;
        public const int LocatorDataLength = 8;
        public const int LocatorDataOffset = 16;

        public const uint FormatVersion = 0x00010000;
        public const uint FeaturesReserved = 0x00000002;
        public const ulong NoDataOffset = 0xFFFFFFFFFFFFFFFFUL;

        public const int DiskTypeFixed = 2;
        public const int DiskTypeDynamic = 3;
        public const int DiskTypeDifferencing = 4;

        /// <summary>A BAT entry of a block that is not allocated.</summary>
        public const uint UnusedBatEntry = 0xFFFFFFFF;
        public const int BatEntrySize = 4;

        // Platform codes of parent locators: Windows paths in UTF-16 little endian (relative, absolute), the deprecated
        // ANSI ones, and a Mac OS X file URL in UTF-8. "Mac " (an alias record) cannot be followed here.
        public const uint PlatformNone = 0;
        public const uint PlatformW2ru = 0x57327275; // "W2ru"
        public const uint PlatformW2ku = 0x57326B75; // "W2ku"
        public const uint PlatformWi2r = 0x57693272; // "Wi2r"
        public const uint PlatformWi2k = 0x5769326B; // "Wi2k"
        public const uint PlatformMacX = 0x4D616358; // "MacX"
        /// <summary>Longest parent locator path this reader takes (the spec's paths are far shorter).</summary>
        public const int MaxLocatorBytes = 64 * 1024;

        /// <summary>
        /// qemu's limit on a VHD's size (VHD_MAX_SECTORS): 2040 GiB, the largest size that a BAT of 32-bit sector offsets
        /// and CHS geometry can describe.
        /// </summary>
        public const long MaxSectors = 0xff000000L;
        public const long MaxVirtualSize = MaxSectors * SectorSize;
        /// <summary>The largest CHS geometry (65535 cylinders, 16 heads, 255 sectors): its size says nothing, current_size does.</summary>
        public const long MaxGeometrySectors = 65535L * 16 * 255;

        public const int MinBlockSize = SectorSize;
        /// <summary>Far above any real VHD's (2 MiB by default, 512 KiB for some Hyper-V ones); bounds a block's bitmap.</summary>
        public const int MaxBlockSize = 256 * 1024 * 1024;

        /// <summary>Seconds between 1970-01-01 and the VHD epoch, 2000-01-01 00:00:00 UTC.</summary>
        public const long EpochUnixSeconds = 946684800;

        /// <summary>Bytes of a block's sector bitmap: one bit per sector, padded to a whole sector.</summary>
        public static int BitmapBytes(int blockSize) => ((blockSize / SectorSize / 8) + SectorSize - 1) / SectorSize * SectorSize;

        /// <summary>The ones' complement of the sum of every byte of <paramref name="data"/>, the 4-byte field at <paramref name="field"/> left out.</summary>
        public static uint Checksum(byte[] data, int index, int count, int field)
        {
            uint sum = 0;
            for (int i = 0; i < count; i++)
            {
                if (i >= field && i < field + 4) continue;
                sum += data[index + i];
            }

            return ~sum;
        }

        public static bool HasCookie(byte[] data, int index, string cookie)
        {
            if (data.Length - index < cookie.Length) return false;
            for (int i = 0; i < cookie.Length; i++)
            {
                if (data[index + i] != (byte)cookie[i]) return false;
            }

            return true;
        }
    }
}
