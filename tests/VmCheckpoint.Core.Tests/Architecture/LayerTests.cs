using System.Text.RegularExpressions;
using Xunit;

namespace VmCheckpoint.Core.Tests.Architecture;

/// <summary>
/// Each layer of VmCheckpoint.Core uses only the layers below it (docs/architecture.md). The check reads the sources:
/// a <c>using</c> of a layer above, or a name qualified with one (<c>Jobs.DiskSource</c>), fails it.
/// </summary>
public class LayerTests
{
    /// <summary>Each layer and the layers it may use (besides itself). Reporting is neutral: everything may use it.</summary>
    public static readonly Dictionary<string, string[]> Allowed = new()
    {
        ["Reporting"] = Array.Empty<string>(),
        ["Security"] = new[] { "Reporting" },
        ["Disks"] = new[] { "Reporting" },
        ["Repository"] = new[] { "Reporting", "Security", "Disks" },
        ["Catalog"] = new[] { "Reporting", "Security", "Disks", "Repository" },
        ["Hypervisors"] = new[] { "Reporting", "Disks" },
        ["Exports"] = new[] { "Reporting", "Security", "Disks", "Repository", "Catalog" },
        ["Jobs"] = new[] { "Reporting", "Security", "Disks", "Repository", "Catalog", "Hypervisors", "Exports" },
        ["Notifications"] = new[] { "Reporting", "Security", "Disks", "Repository", "Catalog", "Hypervisors" },
        ["Health"] = new[] { "Reporting", "Security", "Disks", "Repository", "Catalog", "Hypervisors", "Exports", "Jobs", "Notifications" },
        ["Scheduling"] = new[] { "Reporting", "Security", "Disks", "Repository", "Catalog", "Hypervisors", "Exports", "Jobs", "Health", "Notifications" },
    };

    internal static string SourceRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir != null && !File.Exists(Path.Combine(dir.FullName, "VmCheckpoint.psd1"))) dir = dir.Parent;
        Assert.True(dir != null, "the project root (VmCheckpoint.psd1) is not above the test assembly");
        return Path.Combine(dir!.FullName, "src", "VmCheckpoint.Core");
    }

    [Fact]
    public void EveryFolderOfCoreIsALayer()
    {
        var folders = Directory.GetDirectories(SourceRoot()).Select(Path.GetFileName)
            .Where(n => n != "bin" && n != "obj").OrderBy(n => n).ToArray();
        Assert.Equal(Allowed.Keys.OrderBy(n => n).ToArray(), folders);
    }

    [Fact]
    public void LayersUseOnlyTheLayersBelow()
    {
        var violations = new List<string>();
        foreach (var (layer, allowed) in Allowed)
        {
            var forbidden = Allowed.Keys.Where(l => l != layer && !allowed.Contains(l)).ToArray();
            if (forbidden.Length == 0) continue;
            string names = string.Join("|", forbidden);
            // "using VmCheckpoint.Core.Jobs;", "VmCheckpoint.Core.Jobs.X", or "Jobs.X" where Jobs is not a member access.
            var pattern = new Regex($@"(VmCheckpoint\.Core\.({names})\b)|((?<![\w.""])({names})\.[A-Z]\w*)");
            foreach (var file in Directory.EnumerateFiles(Path.Combine(SourceRoot(), layer), "*.cs", SearchOption.AllDirectories))
            {
                int lineNumber = 0;
                foreach (var line in File.ReadLines(file))
                {
                    lineNumber++;
                    string code = StripCommentsAndStrings(line);
                    var m = pattern.Match(code);
                    if (m.Success) violations.Add($"{Path.GetRelativePath(SourceRoot(), file)}:{lineNumber}: {layer} uses {m.Value}");
                }
            }
        }
        Assert.True(violations.Count == 0, "Layers reach up:\n" + string.Join("\n", violations));
    }

    [Fact]
    public void TheScanFindsAnUpwardUse()
    {
        // The check itself must be able to fail: a line as a violation would be written is caught.
        var pattern = new Regex(@"(VmCheckpoint\.Core\.(Jobs)\b)|((?<![\w.""])(Jobs)\.[A-Z]\w*)");
        Assert.Matches(pattern, StripCommentsAndStrings("using VmCheckpoint.Core.Jobs;"));
        Assert.Matches(pattern, StripCommentsAndStrings("var s = new Jobs.DiskSource(x);"));
        Assert.DoesNotMatch(pattern, StripCommentsAndStrings("var j = request.Jobs.Count; // Jobs.X in a comment"));
        Assert.DoesNotMatch(pattern, StripCommentsAndStrings("log(\"Jobs.Checkpoint failed\");"));
    }

    private static string StripCommentsAndStrings(string line)
    {
        string noStrings = Regex.Replace(line, @"""(\\.|[^""\\])*""", "\"\"");
        int comment = noStrings.IndexOf("//", StringComparison.Ordinal);
        return comment >= 0 ? noStrings.Substring(0, comment) : noStrings;
    }
}
