using System;
using System.Runtime.InteropServices;

namespace VmCheckpoint.Core.Repository
{
    /// <summary>
    /// zstd for blocks: the system's libzstd (libzstd.so.1, Debian's libzstd1) through P/Invoke when it loads,
    /// else the managed ZstdSharp. Both write and read standard zstd frames, so either reads what the other
    /// wrote; only speed differs (docs/decisions.md). One codec per thread: it owns its compression contexts.
    /// </summary>
    internal sealed class BlockCodec : IDisposable
    {
        /// <summary>Set to "managed" to never load the native library (tests, or a libzstd that misbehaves).</summary>
        internal const string EnvironmentVariable = "VMCHECKPOINT_ZSTD";

        private static readonly Lazy<string?> NativeProbe = new Lazy<string?>(ProbeNative);
        private readonly int _level;
        private readonly bool _native;
        private IntPtr _cctx;
        private IntPtr _dctx;
        private ZstdSharp.Compressor? _compressor;
        private ZstdSharp.Decompressor? _decompressor;

        public BlockCodec(int level = 1, bool? native = null)
        {
            _level = level;
            _native = native ?? NativeAvailable;
            if (_native && !NativeAvailable) throw new InvalidOperationException("The native zstd library is not available: " + NativeProbe.Value);
        }

        /// <summary>Whether libzstd loaded (and is not switched off by <see cref="EnvironmentVariable"/>).</summary>
        public static bool NativeAvailable => NativeProbe.Value is null;

        /// <summary>Why the managed codec is used, or null when the native one is.</summary>
        public static string? NativeUnavailableReason => NativeProbe.Value;

        public bool IsNative => _native;

        /// <summary>
        /// The level blocks are stored with: 2 with libzstd (about as fast as the managed level 1 and ~5% smaller on
        /// a tar of /usr), 1 with the managed codec, whose level 2 costs more than it saves (docs/decisions.md).
        /// </summary>
        public static int DefaultLevel => NativeAvailable ? 2 : 1;

        public static int CompressBound(int length) => ZstdSharp.Compressor.GetCompressBound(length);

        /// <summary>Compresses into <paramref name="destination"/> (at least <see cref="CompressBound"/> bytes); returns the length.</summary>
        public int Compress(byte[] source, int length, byte[] destination)
        {
            if (length < 0 || length > source.Length) throw new ArgumentOutOfRangeException(nameof(length));
            if (!_native)
            {
                _compressor ??= new ZstdSharp.Compressor(_level);
                return _compressor.Wrap(new ReadOnlySpan<byte>(source, 0, length), destination);
            }
            if (_cctx == IntPtr.Zero)
            {
                _cctx = Native.ZSTD_createCCtx();
                if (_cctx == IntPtr.Zero) throw new OutOfMemoryException("ZSTD_createCCtx failed.");
            }
            UIntPtr result;
            unsafe
            {
                fixed (byte* s = source)
                fixed (byte* d = destination)
                    result = Native.ZSTD_compressCCtx(_cctx, d, (UIntPtr)destination.Length, s, (UIntPtr)length, _level);
            }
            Check(result, "compression");
            return checked((int)(ulong)result);
        }

        /// <summary>
        /// Decompresses exactly one frame into <paramref name="destination"/>[0, <paramref name="capacity"/>) and
        /// returns the bytes written; damaged input throws <see cref="System.IO.InvalidDataException"/>.
        /// </summary>
        public int Decompress(byte[] source, int length, byte[] destination, int capacity)
        {
            if (length < 0 || length > source.Length) throw new ArgumentOutOfRangeException(nameof(length));
            if (capacity < 0 || capacity > destination.Length) throw new ArgumentOutOfRangeException(nameof(capacity));
            if (!_native)
            {
                _decompressor ??= new ZstdSharp.Decompressor();
                try
                {
                    return _decompressor.Unwrap(new ReadOnlySpan<byte>(source, 0, length), new Span<byte>(destination, 0, capacity));
                }
                catch (Exception e) when (!(e is OutOfMemoryException))
                {
                    throw new System.IO.InvalidDataException(e.Message, e);
                }
            }
            if (_dctx == IntPtr.Zero)
            {
                _dctx = Native.ZSTD_createDCtx();
                if (_dctx == IntPtr.Zero) throw new OutOfMemoryException("ZSTD_createDCtx failed.");
            }
            UIntPtr result;
            unsafe
            {
                fixed (byte* s = source)
                fixed (byte* d = destination)
                    result = Native.ZSTD_decompressDCtx(_dctx, d, (UIntPtr)capacity, s, (UIntPtr)length);
            }
            if (Native.ZSTD_isError(result) != 0)
                throw new System.IO.InvalidDataException("zstd: " + Marshal.PtrToStringAnsi(Native.ZSTD_getErrorName(result)));
            return checked((int)(ulong)result);
        }

        private static void Check(UIntPtr result, string what)
        {
            if (Native.ZSTD_isError(result) != 0)
                throw new InvalidOperationException($"zstd {what} failed: {Marshal.PtrToStringAnsi(Native.ZSTD_getErrorName(result))}");
        }

        private static string? ProbeNative()
        {
            if (string.Equals(Environment.GetEnvironmentVariable(EnvironmentVariable), "managed", StringComparison.OrdinalIgnoreCase))
                return $"{EnvironmentVariable}=managed";
            try
            {
                uint version = Native.ZSTD_versionNumber();
                // 1.4.0 is the first release whose one-shot context calls are stable and fast enough to prefer.
                if (version < 10400) return $"libzstd {version} is older than 1.4.0";
                return null;
            }
            catch (Exception e) when (e is DllNotFoundException || e is EntryPointNotFoundException || e is BadImageFormatException || e is TypeLoadException)
            {
                return e.Message;
            }
        }

        public void Dispose()
        {
            if (_cctx != IntPtr.Zero) { Native.ZSTD_freeCCtx(_cctx); _cctx = IntPtr.Zero; }
            if (_dctx != IntPtr.Zero) { Native.ZSTD_freeDCtx(_dctx); _dctx = IntPtr.Zero; }
            _compressor?.Dispose();
            _compressor = null;
            _decompressor?.Dispose();
            _decompressor = null;
        }

        private static unsafe class Native
        {
            private const string Lib = "libzstd.so.1";
            [DllImport(Lib)] public static extern uint ZSTD_versionNumber();
            [DllImport(Lib)] public static extern IntPtr ZSTD_createCCtx();
            [DllImport(Lib)] public static extern UIntPtr ZSTD_freeCCtx(IntPtr cctx);
            [DllImport(Lib)] public static extern IntPtr ZSTD_createDCtx();
            [DllImport(Lib)] public static extern UIntPtr ZSTD_freeDCtx(IntPtr dctx);
            [DllImport(Lib)] public static extern UIntPtr ZSTD_compressCCtx(IntPtr cctx, byte* dst, UIntPtr dstCapacity, byte* src, UIntPtr srcSize, int level);
            [DllImport(Lib)] public static extern UIntPtr ZSTD_decompressDCtx(IntPtr dctx, byte* dst, UIntPtr dstCapacity, byte* src, UIntPtr srcSize);
            [DllImport(Lib)] public static extern uint ZSTD_isError(UIntPtr code);
            [DllImport(Lib)] public static extern IntPtr ZSTD_getErrorName(UIntPtr code);
        }
    }
}
