namespace VmCheckpoint.Core.Disks.Vhdx
{
    /// <summary>
    /// CRC-32C (Castagnoli), as VHDX uses for headers, region tables and log entries.
    /// Hand-written because System.IO.Hashing is not available to netstandard2.0 without a new
    /// dependency, and a table-driven CRC is 30 lines; VHDX only checksums small structures.
    /// </summary>
    internal static class Crc32C
    {
        private const uint ReflectedPolynomial = 0x82F63B78;
        private static readonly uint[] Table = BuildTable();

        private static uint[] BuildTable()
        {
            var table = new uint[256];
            for (uint i = 0; i < 256; i++)
            {
                uint crc = i;
                for (int bit = 0; bit < 8; bit++)
                    crc = (crc & 1) != 0 ? (crc >> 1) ^ ReflectedPolynomial : crc >> 1;
                table[i] = crc;
            }
            return table;
        }

        public static uint Compute(byte[] data, int index, int count) => Append(0, data, index, count);

        /// <summary>Continues a CRC over more bytes; <paramref name="crc"/> is a previous result (0 to start).</summary>
        public static uint Append(uint crc, byte[] data, int index, int count)
        {
            crc = ~crc;
            for (int i = index, end = index + count; i < end; i++)
                crc = Table[(crc ^ data[i]) & 0xFF] ^ (crc >> 8);
            return ~crc;
        }

        /// <summary>CRC of a structure whose own 4-byte checksum field at <paramref name="checksumOffset"/> counts as zero.</summary>
        public static uint ComputeWithZeroedField(byte[] data, int index, int count, int checksumOffset)
        {
            uint crc = Append(0, data, index, checksumOffset);
            crc = Append(crc, new byte[4], 0, 4);
            int after = checksumOffset + 4;
            return Append(crc, data, index + after, count - after);
        }
    }
}
