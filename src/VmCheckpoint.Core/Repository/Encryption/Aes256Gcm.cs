using System;
using System.Security.Cryptography;

namespace VmCheckpoint.Core.Repository.Encryption
{
    /// <summary>
    /// AES-256-GCM as the repository stores it: <c>nonce (12) | ciphertext | tag (16)</c>, a random nonce per message.
    /// .NET's own AesGcm (AES-NI through the OS's OpenSSL or CNG) where the runtime has it; BouncyCastle's GCM on
    /// netstandard2.0 (Windows PowerShell 5.1), which writes and reads the same bytes. Thread-safe: every call makes its
    /// own cipher state.
    /// </summary>
    internal static class Aes256Gcm
    {
        public const int NonceSize = 12;
        public const int TagSize = 16;
        public const int Overhead = NonceSize + TagSize;
        public const int KeySize = 32;

        /// <summary>Encrypts <paramref name="length"/> bytes of <paramref name="plain"/> into <paramref name="sealedOut"/> (at least length + <see cref="Overhead"/>).</summary>
        public static int Seal(byte[] key, byte[] plain, int offset, int length, byte[] sealedOut, byte[]? associated)
        {
            if (sealedOut.Length < length + Overhead) throw new ArgumentException("The output is too small.", nameof(sealedOut));
            var nonce = new byte[NonceSize];
            RandomBytes(nonce);
            Buffer.BlockCopy(nonce, 0, sealedOut, 0, NonceSize);
#if NET
            using (var gcm = new AesGcm(key, TagSize))
                gcm.Encrypt(nonce, plain.AsSpan(offset, length), sealedOut.AsSpan(NonceSize, length), sealedOut.AsSpan(NonceSize + length, TagSize), associated);
#else
            var cipher = new Org.BouncyCastle.Crypto.Modes.GcmBlockCipher(new Org.BouncyCastle.Crypto.Engines.AesEngine());
            cipher.Init(true, new Org.BouncyCastle.Crypto.Parameters.AeadParameters(new Org.BouncyCastle.Crypto.Parameters.KeyParameter(key), TagSize * 8, nonce, associated));
            int n = cipher.ProcessBytes(plain, offset, length, sealedOut, NonceSize);
            cipher.DoFinal(sealedOut, NonceSize + n);
#endif
            return length + Overhead;
        }

        public static byte[] Seal(byte[] key, byte[] plain, byte[]? associated)
        {
            var result = new byte[plain.Length + Overhead];
            Seal(key, plain, 0, plain.Length, result, associated);
            return result;
        }

        /// <summary>
        /// Decrypts and authenticates <paramref name="length"/> sealed bytes into <paramref name="plainOut"/>; returns the
        /// plain length. Any changed byte, a wrong key or other associated data throws <see cref="CryptographicException"/>.
        /// </summary>
        public static int Open(byte[] key, byte[] sealedIn, int length, byte[] plainOut, byte[]? associated)
        {
            if (length < Overhead) throw new CryptographicException("The message is shorter than a nonce and a tag.");
            int plainLength = length - Overhead;
            if (plainOut.Length < plainLength) throw new ArgumentException("The output is too small.", nameof(plainOut));
#if NET
            using (var gcm = new AesGcm(key, TagSize))
                gcm.Decrypt(sealedIn.AsSpan(0, NonceSize), sealedIn.AsSpan(NonceSize, plainLength), sealedIn.AsSpan(NonceSize + plainLength, TagSize),
                    plainOut.AsSpan(0, plainLength), associated);
#else
            var nonce = new byte[NonceSize];
            Buffer.BlockCopy(sealedIn, 0, nonce, 0, NonceSize);
            var cipher = new Org.BouncyCastle.Crypto.Modes.GcmBlockCipher(new Org.BouncyCastle.Crypto.Engines.AesEngine());
            cipher.Init(false, new Org.BouncyCastle.Crypto.Parameters.AeadParameters(new Org.BouncyCastle.Crypto.Parameters.KeyParameter(key), TagSize * 8, nonce, associated));
            // GCM must see the tag before it hands out a byte: decrypt into a scratch buffer, copy once authenticated.
            var scratch = new byte[cipher.GetOutputSize(length - NonceSize)];
            try
            {
                int n = cipher.ProcessBytes(sealedIn, NonceSize, length - NonceSize, scratch, 0);
                n += cipher.DoFinal(scratch, n);
                Buffer.BlockCopy(scratch, 0, plainOut, 0, n);
            }
            catch (Org.BouncyCastle.Crypto.InvalidCipherTextException e)
            {
                throw new CryptographicException(e.Message, e);
            }
#endif
            return plainLength;
        }

        public static byte[] Open(byte[] key, byte[] sealedIn, byte[]? associated)
        {
            var plain = new byte[Math.Max(0, sealedIn.Length - Overhead)];
            Open(key, sealedIn, sealedIn.Length, plain, associated);
            return plain;
        }

        public static void RandomBytes(byte[] buffer)
        {
#if NET
            RandomNumberGenerator.Fill(buffer); // no generator object per blob
#else
            using (var rng = RandomNumberGenerator.Create()) rng.GetBytes(buffer);
#endif
        }
    }
}
