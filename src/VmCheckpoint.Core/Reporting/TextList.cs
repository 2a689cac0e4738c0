using System.Collections.Generic;

namespace VmCheckpoint.Core.Reporting
{
    /// <summary>
    /// Strings of an output object (problems, ids, names) that read as one line where PowerShell turns a value into
    /// text (Export-Csv, "$x"): "a; b" rather than a .NET type name. Still a list to code and to ConvertTo-Json.
    /// </summary>
    public sealed class TextList : List<string>
    {
        public TextList() { }

        public TextList(IEnumerable<string> items) : base(items) { }

        public override string ToString() => string.Join("; ", this);
    }
}
