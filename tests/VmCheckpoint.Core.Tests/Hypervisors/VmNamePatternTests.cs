using VmCheckpoint.Core.Hypervisors;
using Xunit;

namespace VmCheckpoint.Core.Tests.Hypervisors;

/// <summary>One wildcard semantics for cmdlets and schedules: PowerShell's (*, ?, [set], backtick escapes), case-insensitive.</summary>
public sealed class VmNamePatternTests
{
    private static readonly string[] Vms = { "web01", "web02", "Web10", "db01", "a*b", "x[1]" };

    [Theory]
    [InlineData("web*", new[] { "web01", "web02", "Web10" })]
    [InlineData("web0?", new[] { "web01", "web02" })]
    [InlineData("*01", new[] { "web01", "db01" })]
    [InlineData("web0[2-9]", new[] { "web02" })]
    [InlineData("[dw]*1", new[] { "web01", "db01" })]
    [InlineData("a`*b", new[] { "a*b" })]
    [InlineData("x`[1`]", new[] { "x[1]" })]
    [InlineData("nothing*", new string[0])]
    public void ExpandsAsPowerShellDoes(string pattern, string[] expected)
    {
        Assert.Equal(expected, VmNamePattern.Expand(new[] { pattern }, () => Vms));
    }

    [Fact]
    public void APlainNameStandsForItselfAndTheHostIsNotAsked()
    {
        // A VM that is not there must reach the job as itself, to fail as "not found", not vanish.
        var names = VmNamePattern.Expand(new[] { "missing", "web01", "missing" }, () => throw new InvalidOperationException("listed"));
        Assert.Equal(new[] { "missing", "web01" }, names);
    }

    [Fact]
    public void EachVmOnceInTheOrderGiven()
    {
        Assert.Equal(new[] { "db01", "web01", "web02", "Web10" }, VmNamePattern.Expand(new[] { "db01", "w*", "web01" }, () => Vms));
    }

    [Fact]
    public void MatchesWithoutRegardToCase()
    {
        Assert.True(new VmNamePattern("WEB*").IsMatch("web01"));
        Assert.True(new VmNamePattern("Web01").IsMatch("web01"));
        Assert.False(new VmNamePattern("web0").IsMatch("web01"));
        Assert.False(new VmNamePattern("web.*").IsMatch("web01")); // a dot is a dot, not a regex
    }
}
