namespace VmCheckpoint.Core.Exports
{
    /// <summary>
    /// Numbers of the NBD protocol (fixed newstyle handshake, simple and structured replies, base:allocation), as the
    /// protocol document of the NBD project defines them. Every field on the wire is big-endian.
    /// </summary>
    internal static class NbdProtocol
    {
        public const ulong InitMagic = 0x4e42444d41474943;      // "NBDMAGIC"
        public const ulong OptionMagic = 0x49484156454F5054;    // "IHAVEOPT"
        public const ulong OptionReplyMagic = 0x3e889045565a9;
        public const uint RequestMagic = 0x25609513;
        public const uint SimpleReplyMagic = 0x67446698;
        public const uint StructuredReplyMagic = 0x668e33ef;

        // Handshake flags (server) and client flags.
        public const ushort FlagFixedNewstyle = 1;
        public const ushort FlagNoZeroes = 2;
        public const uint ClientFlagFixedNewstyle = 1;
        public const uint ClientFlagNoZeroes = 2;

        // Options.
        public const uint OptExportName = 1;
        public const uint OptAbort = 2;
        public const uint OptList = 3;
        public const uint OptStartTls = 5;
        public const uint OptInfo = 6;
        public const uint OptGo = 7;
        public const uint OptStructuredReply = 8;
        public const uint OptListMetaContext = 9;
        public const uint OptSetMetaContext = 10;

        // Option replies.
        public const uint RepAck = 1;
        public const uint RepServer = 2;
        public const uint RepInfo = 3;
        public const uint RepMetaContext = 4;
        public const uint RepErrUnsupported = 0x80000001;
        public const uint RepErrPolicy = 0x80000002;
        public const uint RepErrInvalid = 0x80000003;
        public const uint RepErrUnknown = 0x80000006;

        public const ushort InfoExport = 0;
        public const ushort InfoBlockSize = 3;

        // Transmission flags.
        public const ushort TransHasFlags = 1;
        public const ushort TransReadOnly = 2;
        public const ushort TransSendFlush = 4;
        public const ushort TransSendCache = 1024;
        public const ushort TransCanMultiConn = 256;

        // Commands and their flags.
        public const ushort CmdRead = 0;
        public const ushort CmdWrite = 1;
        public const ushort CmdDisconnect = 2;
        public const ushort CmdFlush = 3;
        public const ushort CmdTrim = 4;
        public const ushort CmdCache = 5;
        public const ushort CmdWriteZeroes = 6;
        public const ushort CmdBlockStatus = 7;
        public const ushort CmdFlagReqOne = 8;

        // Structured reply chunks.
        public const ushort ReplyFlagDone = 1;
        public const ushort ReplyTypeNone = 0;
        public const ushort ReplyTypeOffsetData = 1;
        public const ushort ReplyTypeOffsetHole = 2;
        public const ushort ReplyTypeBlockStatus = 5;
        public const ushort ReplyTypeError = 0x8001;

        // base:allocation states.
        public const uint StateHole = 1;
        public const uint StateZero = 2;

        public const string AllocationContext = "base:allocation";
        public const uint AllocationContextId = 1;

        // errno values the protocol carries.
        public const uint EPerm = 1;
        public const uint EIo = 5;
        public const uint EInval = 22;
        public const uint ENotSup = 95;
        public const uint EShutdown = 108;

        /// <summary>The largest request served; announced as the maximum block size (libnbd and qemu stay at or below 32 MiB).</summary>
        public const int MaxRequest = 32 << 20;
        /// <summary>The longest option payload accepted: names are at most 4 KiB, a few of them fit.</summary>
        public const int MaxOptionLength = 64 << 10;
    }
}
