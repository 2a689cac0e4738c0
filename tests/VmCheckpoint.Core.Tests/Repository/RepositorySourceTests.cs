using System.Text.RegularExpressions;
using Xunit;

namespace VmCheckpoint.Core.Tests.Repository;

/// <summary>
/// The repository reaches its bytes through its backend only (Repository/Backends): packs, indexes, manifests, locks
/// and reclaiming speak object names. A File., Directory., FileStream or FileInfo anywhere else in Repository/ would be
/// a way round the seam, one the fault-injecting tests and a future object-store backend would not see.
/// </summary>
public sealed class RepositorySourceTests
{
    private static readonly Regex FileSystemUse = new(@"(?<![\w])(File|Directory)\.[A-Z]|\b(FileStream|FileInfo|DirectoryInfo|FileSystemInfo|SafeFileHandle|RandomAccess)\b");

    /// <summary>src/VmCheckpoint.Core/Repository, found from the test assembly up to the folder of VmCheckpoint.psd1.</summary>
    private static string RepositorySources()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir != null && !File.Exists(Path.Combine(dir.FullName, "VmCheckpoint.psd1"))) dir = dir.Parent;
        Assert.True(dir != null, "the project root (VmCheckpoint.psd1) is not above the test assembly");
        return Path.Combine(dir!.FullName, "src", "VmCheckpoint.Core", "Repository");
    }

    [Fact]
    public void OnlyTheBackendsTouchFiles()
    {
        string root = RepositorySources();
        string backends = Path.Combine(root, "Backends") + Path.DirectorySeparatorChar;
        var files = Directory.EnumerateFiles(root, "*.cs", SearchOption.AllDirectories)
            .Where(f => !f.StartsWith(backends, StringComparison.Ordinal)).ToList();
        Assert.Contains(files, f => f.EndsWith("BlockStore.cs", StringComparison.Ordinal)); // the scan reads the real sources
        var violations = new List<string>();
        foreach (var file in files)
        {
            int lineNumber = 0;
            foreach (var line in File.ReadLines(file))
            {
                lineNumber++;
                var m = FileSystemUse.Match(CodeOf(line));
                if (m.Success) violations.Add($"{Path.GetRelativePath(root, file)}:{lineNumber}: {m.Value}");
            }
        }
        Assert.True(violations.Count == 0, "Repository/ touches files outside Backends/:\n" + string.Join("\n", violations));
    }

    [Fact]
    public void TheScanFindsAFileSystemCall()
    {
        Assert.Matches(FileSystemUse, CodeOf("var b = File.ReadAllBytes(path);"));
        Assert.Matches(FileSystemUse, CodeOf("var b = System.IO.File.ReadAllBytes(path);"));
        Assert.Matches(FileSystemUse, CodeOf("Directory.CreateDirectory(dir);"));
        Assert.Matches(FileSystemUse, CodeOf("using var s = new FileStream(path, FileMode.Open);"));
        Assert.DoesNotMatch(FileSystemUse, CodeOf("var p = IndexFile.Parse(bytes, name); // File.Delete in a comment"));
        Assert.DoesNotMatch(FileSystemUse, CodeOf("var f = new CheckpointFile(id, key, time, name, \"File.Exists\");"));
        Assert.DoesNotMatch(FileSystemUse, CodeOf("/// <summary>A checkpoint file as listed.</summary>"));
    }

    /// <summary>A line without its string literals and its // comment.</summary>
    private static string CodeOf(string line)
    {
        string noStrings = Regex.Replace(line, @"""(\\.|[^""\\])*""", "\"\"");
        int comment = noStrings.IndexOf("//", StringComparison.Ordinal);
        return comment >= 0 ? noStrings.Substring(0, comment) : noStrings;
    }
}
