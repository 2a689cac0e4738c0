using System;
using System.Collections.Generic;
using System.IO;
using System.Text;

namespace VmCheckpoint.Core.Hypervisors.Libvirt.SavedState
{
    /// <summary>
    /// Walks a libvirt save image (virDomainSave, or the memory of an external snapshot): libvirt's header and domain
    /// XML, then QEMU's migration stream (migration/savevm.c, migration/ram.c). The RAM sections come first in a
    /// precopy stream and are parsed record by record; everything from the first other section on (device state,
    /// which only QEMU can parse) is the opaque tail. The walk hands each RAM page record's payload to a visitor, which
    /// either takes it out of the stream (decode: pages go to a page-addressed image) or puts it back (encode).
    /// Anything this walker does not know (compressed pages, XBZRLE, postcopy, another iterable section before RAM
    /// ends) throws <see cref="UnsupportedStreamException"/>: the caller then stores the file as it is.
    /// </summary>
    internal static class MigrationStream
    {
        public const int PageSize = 4096;
        private const uint QemuMagic = 0x5145564D;   // "QEVM"
        private const uint QemuVersion = 3;
        public const string LibvirtMagic = "LibvirtQemudSave";
        public const int LibvirtHeaderLength = 92;  // magic[16], version, data_len, was_running, compressed, cookieOffset, unused[14]

        // Section types (savevm.c)
        private const byte SectionStart = 0x01, SectionPart = 0x02, SectionEnd = 0x03, SectionFull = 0x04, Configuration = 0x07, Footer = 0x7E, Subsection = 0x05, Eof = 0x00;
        // RAM record flags (ram.c), in the low bits of the page address
        private const ulong FlagZero = 0x02, FlagMemSize = 0x04, FlagPage = 0x08, FlagEos = 0x10, FlagContinue = 0x20,
            FlagXbzrle = 0x40, FlagHook = 0x80, FlagCompressPage = 0x100, FlagMultifdFlush = 0x200;

        /// <summary>What the walk reports.</summary>
        public interface IVisitor
        {
            /// <summary>A RAM block, as the stream declares it (in order).</summary>
            void Block(string id, long length);
            /// <summary>A page record of <paramref name="block"/> at <paramref name="offset"/>: its payload must be consumed (read or supplied).</summary>
            void Page(string block, long offset, Reader input, Writer output);
            /// <summary>A zero-filled page.</summary>
            void ZeroPage(string block, long offset);
        }

        /// <summary>
        /// Copies <paramref name="input"/> to <paramref name="output"/>, letting <paramref name="visitor"/> handle each
        /// page payload. Returns the domain XML found in libvirt's header.
        /// </summary>
        public static string Walk(Stream input, Stream output, IVisitor visitor, Func<string, string>? rewriteXml = null)
        {
            var r = new Reader(input);
            var w = new Writer(output);
            string xml = CopyHeader(r, w, rewriteXml);

            if (w.Copy32(r) != QemuMagic) throw new UnsupportedStreamException("no QEMU migration stream after the header");
            if (w.Copy32(r) != QemuVersion) throw new UnsupportedStreamException("an unknown migration stream version");

            uint ramSection = uint.MaxValue;
            bool ramEnded = false;
            var blocks = new List<string>();
            string? current = null; // the block a CONTINUE record refers to: the last one named, in any earlier section
            while (true)
            {
                int type = r.PeekByte();
                if (type < 0) throw new UnsupportedStreamException("the stream ends before its end marker");
                if (type == Configuration)
                {
                    w.Copy8(r);
                    uint nameLength = w.Copy32(r);
                    w.CopyBytes(r, checked((int)nameLength));
                    while (r.PeekByte() == Subsection) CopyConfigurationSubsection(r, w);
                }
                else if (type == SectionStart || type == SectionFull)
                {
                    if (ramEnded || type == SectionFull) break; // device state: opaque from here on
                    w.Copy8(r);
                    uint id = w.Copy32(r);
                    int idLength = w.Copy8(r);
                    string name = Encoding.ASCII.GetString(w.CopyBytes(r, idLength));
                    w.Copy32(r); // instance
                    w.Copy32(r); // version
                    if (name != "ram") throw new UnsupportedStreamException($"an iterable section '{name}' before RAM ended");
                    ramSection = id;
                    RamRecords(r, w, visitor, blocks, ref current, start: true);
                    CopyFooter(r, w, id);
                }
                else if (type == SectionPart || type == SectionEnd)
                {
                    w.Copy8(r);
                    uint id = w.Copy32(r);
                    if (id != ramSection) throw new UnsupportedStreamException($"a part of section {id}, not RAM's");
                    RamRecords(r, w, visitor, blocks, ref current, start: false);
                    CopyFooter(r, w, id);
                    if (type == SectionEnd) ramEnded = true;
                }
                else if (type == Eof && ramEnded)
                {
                    break;
                }
                else
                {
                    throw new UnsupportedStreamException($"section type {type} where RAM was expected");
                }
            }
            if (!ramEnded) throw new UnsupportedStreamException("the RAM section never ended");
            r.CopyRest(w);
            return xml;
        }

        /// <summary>
        /// Copies libvirt's header and its data (the domain XML, then the migration cookie at cookieOffset), the XML
        /// rewritten when asked (a copy under another name, its disks elsewhere). Returns the XML as it was.
        /// </summary>
        public static string CopyHeader(Reader r, Writer w, Func<string, string>? rewriteXml)
        {
            var header = r.Bytes(LibvirtHeaderLength);
            if (Encoding.ASCII.GetString(header, 0, 16) != LibvirtMagic) throw new UnsupportedStreamException("not a libvirt save image");
            if (BitConverter.ToUInt32(header, 28) != 0) throw new UnsupportedStreamException("the save image is compressed");
            int dataLength = checked((int)BitConverter.ToUInt32(header, 20));
            int cookieOffset = checked((int)BitConverter.ToUInt32(header, 32));
            var data = r.Bytes(dataLength);
            int xmlEnd = Array.IndexOf(data, (byte)0);
            if (xmlEnd < 0) xmlEnd = data.Length;
            string xml = Encoding.UTF8.GetString(data, 0, xmlEnd);
            if (rewriteXml is null)
            {
                w.Bytes(header);
                w.Bytes(data);
                return xml;
            }
            var cookie = new byte[0];
            if (cookieOffset > 0 && cookieOffset < data.Length)
            {
                int cookieEnd = Array.IndexOf(data, (byte)0, cookieOffset);
                cookie = new byte[(cookieEnd < 0 ? data.Length : cookieEnd + 1) - cookieOffset];
                Buffer.BlockCopy(data, cookieOffset, cookie, 0, cookie.Length);
            }
            var newXml = Encoding.UTF8.GetBytes(rewriteXml(xml) + "\0");
            var newData = new byte[newXml.Length + cookie.Length];
            Buffer.BlockCopy(newXml, 0, newData, 0, newXml.Length);
            Buffer.BlockCopy(cookie, 0, newData, newXml.Length, cookie.Length);
            BitConverter.GetBytes((uint)newData.Length).CopyTo(header, 20);
            BitConverter.GetBytes((uint)(cookie.Length > 0 ? newXml.Length : 0)).CopyTo(header, 32);
            w.Bytes(header);
            w.Bytes(newData);
            return xml;
        }

        private static void RamRecords(Reader r, Writer w, IVisitor visitor, List<string> blocks, ref string? current, bool start)
        {
            while (true)
            {
                ulong word = w.Copy64(r);
                ulong flags = word & (PageSize - 1);
                long address = (long)(word & ~(ulong)(PageSize - 1));
                if ((flags & (FlagXbzrle | FlagHook | FlagCompressPage)) != 0)
                    throw new UnsupportedStreamException("compressed, XBZRLE or hooked pages");
                if ((flags & FlagMultifdFlush) != 0) continue;
                if ((flags & (FlagZero | FlagPage)) != 0 && (flags & FlagContinue) == 0)
                {
                    int n = w.Copy8(r);
                    current = Encoding.ASCII.GetString(w.CopyBytes(r, n));
                    if (!blocks.Contains(current)) throw new UnsupportedStreamException($"a page of unknown RAM block '{current}'");
                }
                switch (flags & ~FlagContinue)
                {
                    case FlagMemSize:
                        if (!start) throw new UnsupportedStreamException("a RAM size record outside the first section");
                        long total = address;
                        while (total > 0)
                        {
                            int n = w.Copy8(r);
                            string id = Encoding.ASCII.GetString(w.CopyBytes(r, n));
                            long length = (long)w.Copy64(r);
                            if (length <= 0 || length > total || length % PageSize != 0) throw new UnsupportedStreamException($"RAM block '{id}' of {length} bytes (postcopy or shared RAM)");
                            blocks.Add(id);
                            visitor.Block(id, length);
                            total -= length;
                        }
                        break;
                    case FlagZero:
                        if (current is null) throw new UnsupportedStreamException("a page before its block");
                        if (w.Copy8(r) != 0) throw new UnsupportedStreamException("a page filled with a non-zero byte");
                        visitor.ZeroPage(current, address);
                        break;
                    case FlagPage:
                        if (current is null) throw new UnsupportedStreamException("a page before its block");
                        visitor.Page(current, address, r, w);
                        break;
                    case FlagEos:
                        return;
                    default:
                        throw new UnsupportedStreamException($"a RAM record with flags 0x{flags:x}");
                }
            }
        }

        private static void CopyFooter(Reader r, Writer w, uint id)
        {
            if (r.PeekByte() != Footer) return; // machine types before 2.x write none
            w.Copy8(r);
            if (w.Copy32(r) != id) throw new UnsupportedStreamException("a section footer of another section");
        }

        /// <summary>The configuration's optional subsections (savevm.c vmstate_configuration): capabilities, uuid.</summary>
        private static void CopyConfigurationSubsection(Reader r, Writer w)
        {
            w.Copy8(r);
            int n = w.Copy8(r);
            string name = Encoding.ASCII.GetString(w.CopyBytes(r, n));
            w.Copy32(r); // version
            if (name == "configuration/capabilities")
            {
                uint count = w.Copy32(r);
                for (uint i = 0; i < count; i++) w.CopyBytes(r, w.Copy8(r));
            }
            else if (name == "configuration/uuid")
            {
                w.CopyBytes(r, 16);
            }
            else
            {
                throw new UnsupportedStreamException($"configuration subsection '{name}'");
            }
        }

        /// <summary>Big-endian reads from the input, through a buffer.</summary>
        public sealed class Reader
        {
            private readonly Stream _s;
            private readonly byte[] _buffer = new byte[1 << 16];
            private int _at, _end;

            public Reader(Stream s) { _s = s; }

            /// <summary>Bytes consumed so far.</summary>
            public long Position { get; private set; }

            public int PeekByte()
            {
                if (_at == _end && !Fill()) return -1;
                return _buffer[_at];
            }

            public void Read(byte[] target, int index, int count)
            {
                while (count > 0)
                {
                    if (_at == _end && !Fill()) throw new UnsupportedStreamException("the stream ends in the middle of a record");
                    int n = Math.Min(count, _end - _at);
                    Buffer.BlockCopy(_buffer, _at, target, index, n);
                    _at += n; index += n; count -= n; Position += n;
                }
            }

            public byte[] Bytes(int count)
            {
                var b = new byte[count];
                Read(b, 0, count);
                return b;
            }

            public void CopyRest(Writer w)
            {
                while (_at < _end || Fill())
                {
                    w.Write(_buffer, _at, _end - _at);
                    Position += _end - _at;
                    _at = _end;
                }
            }

            private bool Fill()
            {
                _at = 0;
                _end = _s.Read(_buffer, 0, _buffer.Length);
                return _end > 0;
            }
        }

        /// <summary>Writes what the reader consumed (the skeleton or the whole stream); a null stream writes nothing.</summary>
        public sealed class Writer
        {
            private readonly Stream _s;
            private readonly byte[] _one = new byte[8];

            public Writer(Stream s) { _s = s; }

            public void Write(byte[] b, int index, int count) => _s.Write(b, index, count);
            public void Bytes(byte[] b) => _s.Write(b, 0, b.Length);

            public byte[] CopyBytes(Reader r, int count)
            {
                var b = r.Bytes(count);
                Bytes(b);
                return b;
            }

            public int Copy8(Reader r) { r.Read(_one, 0, 1); _s.Write(_one, 0, 1); return _one[0]; }

            public uint Copy32(Reader r)
            {
                r.Read(_one, 0, 4);
                _s.Write(_one, 0, 4);
                return (uint)(_one[0] << 24 | _one[1] << 16 | _one[2] << 8 | _one[3]);
            }

            public ulong Copy64(Reader r)
            {
                r.Read(_one, 0, 8);
                _s.Write(_one, 0, 8);
                ulong v = 0;
                for (int i = 0; i < 8; i++) v = v << 8 | _one[i];
                return v;
            }
        }
    }

    /// <summary>The save image holds something the page decoder does not handle; it is stored as it is.</summary>
    internal sealed class UnsupportedStreamException : Exception
    {
        public UnsupportedStreamException(string message) : base(message) { }
    }
}
