using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Text;
using System.Threading;
using static VmCheckpoint.Core.Exports.NbdProtocol;

namespace VmCheckpoint.Core.Exports
{
    /// <summary>
    /// One client of an NBD server, over any stream: the fixed newstyle handshake, then requests served in order until
    /// the client disconnects. Read-only: writes are refused with EPERM. A read whose blocks cannot all be checked
    /// against their hashes is answered with EIO and no data, never with bytes that were not checked.
    /// </summary>
    public sealed class NbdConnection
    {
        private readonly Stream _input;
        private readonly Stream _output;
        private readonly IReadOnlyList<IExportedDisk> _exports;
        private readonly Action<string>? _log;
        private readonly byte[] _header = new byte[32];
        private bool _structured;
        private bool _allocationContext;
        private bool _noZeroes;

        /// <param name="input">What the client sends.</param>
        /// <param name="output">Where replies go (may be the same stream; kept apart so that each side can be buffered on its own).</param>
        public NbdConnection(Stream input, Stream output, IReadOnlyList<IExportedDisk> exports, Action<string>? log = null)
        {
            _input = input;
            _output = output;
            _exports = exports;
            _log = log;
        }

        /// <summary>Serves until the client disconnects, the stream ends or <paramref name="cancellationToken"/> is cancelled.</summary>
        public void Serve(CancellationToken cancellationToken)
        {
            var export = Handshake();
            if (export is null) return;
            using var reader = export.OpenReader();
            Transmit(export, reader, cancellationToken);
        }

        // ---- handshake ----

        private IExportedDisk? Handshake()
        {
            var hello = new byte[18];
            PutU64(hello, 0, InitMagic);
            PutU64(hello, 8, OptionMagic);
            PutU16(hello, 16, (ushort)(FlagFixedNewstyle | FlagNoZeroes));
            Write(hello);
            uint clientFlags = GetU32(ReadExactly(4), 0);
            if ((clientFlags & ClientFlagFixedNewstyle) == 0) throw new IOException("The NBD client does not speak the fixed newstyle handshake.");
            _noZeroes = (clientFlags & ClientFlagNoZeroes) != 0;
            while (true)
            {
                var head = ReadExactly(16);
                if (GetU64(head, 0) != OptionMagic) throw new IOException("The NBD client sent an option without its magic.");
                uint option = GetU32(head, 8);
                uint length = GetU32(head, 12);
                if (length > MaxOptionLength) throw new IOException($"The NBD client sent option {option} of {length} bytes.");
                var data = ReadExactly((int)length);
                switch (option)
                {
                    case OptExportName:
                    {
                        var export = Find(Encoding.UTF8.GetString(data));
                        if (export is null) throw new IOException($"The NBD client asked for export '{Encoding.UTF8.GetString(data)}', which is not served.");
                        var reply = new byte[10 + (_noZeroes ? 0 : 124)];
                        PutU64(reply, 0, (ulong)export.Size);
                        PutU16(reply, 8, TransmissionFlags);
                        Write(reply);
                        return export;
                    }
                    case OptAbort:
                        OptionReply(option, RepAck);
                        return null;
                    case OptList:
                        if (length != 0) { OptionReply(option, RepErrInvalid); break; }
                        foreach (var e in _exports)
                        {
                            var name = Encoding.UTF8.GetBytes(e.Name);
                            var payload = new byte[4 + name.Length];
                            PutU32(payload, 0, (uint)name.Length);
                            Buffer.BlockCopy(name, 0, payload, 4, name.Length);
                            OptionReply(option, RepServer, payload);
                        }
                        OptionReply(option, RepAck);
                        break;
                    case OptStructuredReply:
                        if (length != 0) { OptionReply(option, RepErrInvalid); break; }
                        _structured = true;
                        OptionReply(option, RepAck);
                        break;
                    case OptListMetaContext:
                    case OptSetMetaContext:
                        MetaContext(option, data);
                        break;
                    case OptInfo:
                    case OptGo:
                    {
                        var export = InfoOrGo(option, data);
                        if (export != null && option == OptGo) return export;
                        break;
                    }
                    default:
                        // STARTTLS, extended headers and anything newer: not offered.
                        OptionReply(option, RepErrUnsupported);
                        break;
                }
            }
        }

        private ushort TransmissionFlags => (ushort)(TransHasFlags | TransReadOnly | TransSendFlush | TransSendCache | TransCanMultiConn);

        private IExportedDisk? InfoOrGo(uint option, byte[] data)
        {
            if (data.Length < 6) { OptionReply(option, RepErrInvalid); return null; }
            int nameLength = (int)GetU32(data, 0);
            if (nameLength > data.Length - 6) { OptionReply(option, RepErrInvalid); return null; }
            string name = Encoding.UTF8.GetString(data, 4, nameLength);
            int requests = GetU16(data, 4 + nameLength);
            if (data.Length != 6 + nameLength + 2 * requests) { OptionReply(option, RepErrInvalid); return null; }
            var export = Find(name);
            if (export is null)
            {
                OptionReply(option, RepErrUnknown, Encoding.UTF8.GetBytes($"no export named '{name}' (served: {string.Join(", ", _exports.Select(e => e.Name))})"));
                return null;
            }
            var info = new byte[12];
            PutU16(info, 0, InfoExport);
            PutU64(info, 2, (ulong)export.Size);
            PutU16(info, 10, TransmissionFlags);
            OptionReply(option, RepInfo, info);
            for (int i = 0; i < requests; i++)
            {
                if (GetU16(data, 6 + nameLength + 2 * i) != InfoBlockSize) continue;
                var sizes = new byte[14];
                PutU16(sizes, 0, InfoBlockSize);
                PutU32(sizes, 2, 1);
                PutU32(sizes, 6, 4096);
                PutU32(sizes, 10, (uint)MaxRequest);
                OptionReply(option, RepInfo, sizes);
            }
            OptionReply(option, RepAck);
            return export;
        }

        private void MetaContext(uint option, byte[] data)
        {
            if (option == OptSetMetaContext && !_structured) { OptionReply(option, RepErrInvalid); return; }
            if (data.Length < 8) { OptionReply(option, RepErrInvalid); return; }
            int nameLength = (int)GetU32(data, 0);
            if (nameLength > data.Length - 8) { OptionReply(option, RepErrInvalid); return; }
            string exportName = Encoding.UTF8.GetString(data, 4, nameLength);
            if (Find(exportName) is null)
            {
                OptionReply(option, RepErrUnknown, Encoding.UTF8.GetBytes($"no export named '{exportName}'"));
                return;
            }
            int position = 4 + nameLength;
            uint queries = GetU32(data, position);
            position += 4;
            var names = new List<string>();
            for (uint i = 0; i < queries; i++)
            {
                if (position + 4 > data.Length) { OptionReply(option, RepErrInvalid); return; }
                int l = (int)GetU32(data, position);
                position += 4;
                if (l > data.Length - position) { OptionReply(option, RepErrInvalid); return; }
                names.Add(Encoding.UTF8.GetString(data, position, l));
                position += l;
            }
            if (position != data.Length) { OptionReply(option, RepErrInvalid); return; }
            bool match = option == OptListMetaContext
                ? queries == 0 || names.Any(n => n == "base:" || n == AllocationContext)
                : names.Contains(AllocationContext);
            if (option == OptSetMetaContext) _allocationContext = match;
            if (match)
            {
                var context = Encoding.UTF8.GetBytes(AllocationContext);
                var payload = new byte[4 + context.Length];
                PutU32(payload, 0, option == OptSetMetaContext ? AllocationContextId : 0);
                Buffer.BlockCopy(context, 0, payload, 4, context.Length);
                OptionReply(option, RepMetaContext, payload);
            }
            OptionReply(option, RepAck);
        }

        /// <summary>An export by name; the empty name (the client's default) is the only export, when there is one.</summary>
        private IExportedDisk? Find(string name)
        {
            if (name.Length == 0) return _exports.Count == 1 ? _exports[0] : null;
            return _exports.FirstOrDefault(e => e.Name == name);
        }

        private void OptionReply(uint option, uint type, byte[]? payload = null)
        {
            int length = payload?.Length ?? 0;
            var reply = new byte[20 + length];
            PutU64(reply, 0, OptionReplyMagic);
            PutU32(reply, 8, option);
            PutU32(reply, 12, type);
            PutU32(reply, 16, (uint)length);
            if (payload != null) Buffer.BlockCopy(payload, 0, reply, 20, length);
            Write(reply);
        }

        // ---- transmission ----

        private void Transmit(IExportedDisk export, IExportReader reader, CancellationToken cancellationToken)
        {
            byte[] data = new byte[0];
            while (true)
            {
                if (!TryReadExactly(_header, 28)) return;
                if (GetU32(_header, 0) != RequestMagic) throw new IOException("The NBD client sent a request without its magic.");
                ushort flags = GetU16(_header, 4);
                ushort type = GetU16(_header, 6);
                ulong cookie = GetU64(_header, 8);
                ulong offset = GetU64(_header, 16);
                uint length = GetU32(_header, 24);
                if (cancellationToken.IsCancellationRequested)
                {
                    // The server is stopping (stopped, or its repository lock lost): no more reads are answered.
                    Error(cookie, EShutdown, "the export is shutting down");
                    return;
                }
                bool inside = offset <= (ulong)export.Size && length <= (ulong)export.Size - offset;
                switch (type)
                {
                    case CmdDisconnect:
                        return;
                    case CmdWrite:
                        ReadExactly((int)Math.Min(length, int.MaxValue)); // the payload is on the wire: take it, then refuse
                        Error(cookie, EPerm, "the export is read-only");
                        break;
                    case CmdTrim:
                    case CmdWriteZeroes:
                        Error(cookie, EPerm, "the export is read-only");
                        break;
                    case CmdFlush:
                    case CmdCache:
                        SimpleOrDone(cookie);
                        break;
                    case CmdRead:
                        if (!inside || length > MaxRequest) { Error(cookie, EInval, $"read of {length} bytes at {offset} is outside the disk or too large"); break; }
                        if (data.Length < length) data = new byte[Math.Max(length, 1 << 20)];
                        ServeRead(export, reader, cookie, (long)offset, (int)length, data);
                        break;
                    case CmdBlockStatus:
                        if (!_structured || !_allocationContext) { Error(cookie, EInval, "no meta context was negotiated"); break; }
                        if (!inside || length == 0) { Error(cookie, EInval, $"block status at {offset} is outside the disk"); break; }
                        ServeBlockStatus(reader, cookie, (long)offset, length, (flags & CmdFlagReqOne) != 0);
                        break;
                    default:
                        Error(cookie, EInval, $"command {type} is not supported");
                        break;
                }
            }
        }

        private void ServeRead(IExportedDisk export, IExportReader reader, ulong cookie, long offset, int length, byte[] data)
        {
            IReadOnlyList<ExportExtent> map;
            try
            {
                map = reader.Map(offset, length);
                // Everything is read and checked before the first byte goes out: a failed block fails the whole read.
                foreach (var e in map)
                    if (!e.Zero || !_structured) reader.Read(e.Offset, data, (int)(e.Offset - offset), (int)e.Length);
            }
            catch (Exception e) when (e is IOException || e is InvalidDataException || e is UnauthorizedAccessException || e is ObjectDisposedException)
            {
                string message = $"disk {export.Name}: {e.Message}";
                _log?.Invoke($"read of {length} bytes at {offset} failed: {message}");
                Error(cookie, EIo, message);
                return;
            }
            if (!_structured)
            {
                var reply = new byte[16];
                PutU32(reply, 0, SimpleReplyMagic);
                PutU32(reply, 4, 0);
                PutU64(reply, 8, cookie);
                _output.Write(reply, 0, reply.Length);
                _output.Write(data, 0, length);
                _output.Flush();
                return;
            }
            if (length == 0) { SimpleOrDone(cookie); return; }
            for (int i = 0; i < map.Count; i++)
            {
                var e = map[i];
                bool last = i == map.Count - 1;
                if (e.Zero)
                {
                    var payload = new byte[12];
                    PutU64(payload, 0, (ulong)e.Offset);
                    PutU32(payload, 8, (uint)e.Length);
                    Chunk(cookie, ReplyTypeOffsetHole, last, payload, 0, 0, null);
                }
                else
                {
                    var head = new byte[8];
                    PutU64(head, 0, (ulong)e.Offset);
                    Chunk(cookie, ReplyTypeOffsetData, last, head, (int)(e.Offset - offset), (int)e.Length, data);
                }
            }
            _output.Flush();
        }

        private void ServeBlockStatus(IExportReader reader, ulong cookie, long offset, uint length, bool one)
        {
            var map = reader.Map(offset, length);
            int count = one ? 1 : map.Count;
            var payload = new byte[4 + 8 * count];
            PutU32(payload, 0, AllocationContextId);
            for (int i = 0; i < count; i++)
            {
                PutU32(payload, 4 + 8 * i, (uint)map[i].Length);
                PutU32(payload, 8 + 8 * i, map[i].Zero ? StateHole | StateZero : 0);
            }
            Chunk(cookie, ReplyTypeBlockStatus, true, payload, 0, 0, null);
            _output.Flush();
        }

        private void SimpleOrDone(ulong cookie)
        {
            if (_structured) Chunk(cookie, ReplyTypeNone, true, new byte[0], 0, 0, null);
            else
            {
                var reply = new byte[16];
                PutU32(reply, 0, SimpleReplyMagic);
                PutU64(reply, 8, cookie);
                _output.Write(reply, 0, reply.Length);
            }
            _output.Flush();
        }

        private void Error(ulong cookie, uint errno, string message)
        {
            if (_structured)
            {
                var text = Encoding.UTF8.GetBytes(message.Length > 1000 ? message.Substring(0, 1000) : message);
                var payload = new byte[6 + text.Length];
                PutU32(payload, 0, errno);
                PutU16(payload, 4, (ushort)text.Length);
                Buffer.BlockCopy(text, 0, payload, 6, text.Length);
                Chunk(cookie, ReplyTypeError, true, payload, 0, 0, null);
            }
            else
            {
                var reply = new byte[16];
                PutU32(reply, 0, SimpleReplyMagic);
                PutU32(reply, 4, errno);
                PutU64(reply, 8, cookie);
                _output.Write(reply, 0, reply.Length);
            }
            _output.Flush();
        }

        /// <summary>A structured reply chunk: its header, <paramref name="head"/>, then <paramref name="length"/> bytes of <paramref name="data"/>.</summary>
        private void Chunk(ulong cookie, ushort type, bool done, byte[] head, int dataOffset, int length, byte[]? data)
        {
            var header = new byte[20 + head.Length];
            PutU32(header, 0, StructuredReplyMagic);
            PutU16(header, 4, done ? ReplyFlagDone : (ushort)0);
            PutU16(header, 6, type);
            PutU64(header, 8, cookie);
            PutU32(header, 16, (uint)(head.Length + length));
            Buffer.BlockCopy(head, 0, header, 20, head.Length);
            _output.Write(header, 0, header.Length);
            if (length > 0) _output.Write(data!, dataOffset, length);
        }

        // ---- wire ----

        private void Write(byte[] bytes)
        {
            _output.Write(bytes, 0, bytes.Length);
            _output.Flush();
        }

        private byte[] ReadExactly(int count)
        {
            var buffer = new byte[count];
            if (!TryReadExactly(buffer, count)) throw new EndOfStreamException("The NBD client closed the connection.");
            return buffer;
        }

        private bool TryReadExactly(byte[] buffer, int count)
        {
            int done = 0;
            while (done < count)
            {
                int n = _input.Read(buffer, done, count - done);
                if (n == 0)
                {
                    if (done == 0) return false;
                    throw new EndOfStreamException("The NBD client closed the connection in the middle of a message.");
                }
                done += n;
            }
            return true;
        }

        private static void PutU16(byte[] b, int i, ushort v) { b[i] = (byte)(v >> 8); b[i + 1] = (byte)v; }
        private static void PutU32(byte[] b, int i, uint v) { for (int k = 3; k >= 0; k--) { b[i + k] = (byte)v; v >>= 8; } }
        private static void PutU64(byte[] b, int i, ulong v) { for (int k = 7; k >= 0; k--) { b[i + k] = (byte)v; v >>= 8; } }
        private static ushort GetU16(byte[] b, int i) => (ushort)((b[i] << 8) | b[i + 1]);
        private static uint GetU32(byte[] b, int i) => ((uint)b[i] << 24) | ((uint)b[i + 1] << 16) | ((uint)b[i + 2] << 8) | b[i + 3];
        private static ulong GetU64(byte[] b, int i) => ((ulong)GetU32(b, i) << 32) | GetU32(b, i + 4);
    }
}
