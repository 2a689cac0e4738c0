// The export server process; everything it does is VmCheckpoint.Core.Exports.ExportServerProgram.
return VmCheckpoint.Core.Exports.ExportServerProgram.Main(args);
