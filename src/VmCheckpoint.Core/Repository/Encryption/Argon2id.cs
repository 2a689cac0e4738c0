using System;
using System.Runtime.InteropServices;

namespace VmCheckpoint.Core.Repository.Encryption
{
    /// <summary>
    /// Argon2id (RFC 9106, version 1.3). On Linux, the reference implementation itself (libargon2, Debian's libargon2-1,
    /// which cryptsetup and systemd already pull in): its lanes run in parallel and use SIMD, so an unlock costs a
    /// fraction of a pure managed derivation, and every encrypted command starts that much sooner. Elsewhere, or where
    /// the library is missing, BouncyCastle's managed Argon2 (shipped with MailKit). Both give the same bytes
    /// (tested), so a key slot opens on any host.
    /// </summary>
    internal static class Argon2id
    {
        public static byte[] Derive(byte[] password, byte[] salt, int memoryKiB, int iterations, int parallelism, int length)
        {
            if (Native.Available)
            {
                var key = new byte[length];
                int rc = Native.argon2id_hash_raw((uint)iterations, (uint)memoryKiB, (uint)parallelism, password, (UIntPtr)password.Length,
                    salt, (UIntPtr)salt.Length, key, (UIntPtr)length);
                if (rc == 0) return key;
                // A failure of the library (memory, threads) is not a wrong password: derive the same key in managed code.
            }
            return Managed(password, salt, memoryKiB, iterations, parallelism, length);
        }

        /// <summary>BouncyCastle's Argon2id: every platform, no native library.</summary>
        internal static byte[] Managed(byte[] password, byte[] salt, int memoryKiB, int iterations, int parallelism, int length)
        {
            var parameters = new Org.BouncyCastle.Crypto.Parameters.Argon2Parameters.Builder(Org.BouncyCastle.Crypto.Parameters.Argon2Parameters.Argon2id)
                .WithVersion(Org.BouncyCastle.Crypto.Parameters.Argon2Parameters.Version13)
                .WithMemoryAsKB(memoryKiB)
                .WithIterations(iterations)
                .WithParallelism(parallelism)
                .WithSalt(salt)
                .Build();
            var generator = new Org.BouncyCastle.Crypto.Generators.Argon2BytesGenerator();
            generator.Init(parameters);
            var key = new byte[length];
            generator.GenerateBytes(password, key);
            return key;
        }

        internal static bool NativeAvailable => Native.Available;

        private static class Native
        {
            private const string Library = "libargon2.so.1";

            public static readonly bool Available = Probe();

            private static bool Probe()
            {
                if (!RuntimeInformation.IsOSPlatform(OSPlatform.Linux)) return false;
                try
                {
                    // A tiny derivation: loads the library and resolves the entry point once.
                    var output = new byte[16];
                    return argon2id_hash_raw(1, 8, 1, new byte[1], (UIntPtr)1, new byte[8], (UIntPtr)8, output, (UIntPtr)16) == 0;
                }
                catch (Exception e) when (e is DllNotFoundException || e is EntryPointNotFoundException || e is BadImageFormatException)
                {
                    return false;
                }
            }

            [DllImport(Library, CallingConvention = CallingConvention.Cdecl)]
            public static extern int argon2id_hash_raw(uint t_cost, uint m_cost, uint parallelism, byte[] pwd, UIntPtr pwdlen,
                byte[] salt, UIntPtr saltlen, byte[] hash, UIntPtr hashlen);
        }
    }
}
