using VmCheckpoint.Core.Repository;
using Xunit;

namespace VmCheckpoint.Core.Tests.Repository;

public sealed class RetentionPolicyTests
{
    private static (string Id, DateTime Time) At(string id, int year, int month, int day, int hour = 12) =>
        (id, new DateTime(year, month, day, hour, 0, 0, DateTimeKind.Utc));

    private static string[] Kept(RetentionPolicy policy, params (string Id, DateTime Time)[] checkpoints) =>
        policy.SelectKept(checkpoints).OrderBy(x => x, StringComparer.Ordinal).ToArray();

    [Fact]
    public void KeepLastKeepsTheNewest()
    {
        var all = new[] { At("a", 2024, 1, 1), At("c", 2024, 1, 3), At("b", 2024, 1, 2), At("d", 2024, 1, 4) };
        Assert.Equal(new[] { "c", "d" }, Kept(new RetentionPolicy { KeepLast = 2 }, all));
        Assert.Equal(new[] { "a", "b", "c", "d" }, Kept(new RetentionPolicy { KeepLast = 10 }, all));
    }

    [Fact]
    public void KeepDailyKeepsTheNewestOfEachDay()
    {
        var all = new[]
        {
            At("d1-early", 2024, 3, 1, 1), At("d1-late", 2024, 3, 1, 23),
            At("d2-a", 2024, 3, 2, 5), At("d2-b", 2024, 3, 2, 6), At("d2-c", 2024, 3, 2, 7),
            At("d4", 2024, 3, 4, 0),
        };
        Assert.Equal(new[] { "d2-c", "d4" }, Kept(new RetentionPolicy { KeepDaily = 2 }, all));
        Assert.Equal(new[] { "d1-late", "d2-c", "d4" }, Kept(new RetentionPolicy { KeepDaily = 7 }, all));
        // Days are UTC days: 23:30 local elsewhere is still the UTC date written.
        var local = new[] { ("x", new DateTime(2024, 3, 1, 23, 30, 0, DateTimeKind.Utc)), ("y", new DateTime(2024, 3, 2, 0, 30, 0, DateTimeKind.Utc)) };
        Assert.Equal(new[] { "x", "y" }, Kept(new RetentionPolicy { KeepDaily = 2 }, local));
    }

    [Fact]
    public void KeepWeeklyUsesIsoWeeksAcrossTheYearBoundary()
    {
        // 2024-12-30 (Mon) to 2025-01-05 (Sun) is ISO week 2025-W01; 2024-12-29 (Sun) ends 2024-W52.
        // 2020-12-31 (Thu) and 2021-01-03 (Sun) are both 2020-W53.
        var all = new[]
        {
            At("w52-sun", 2024, 12, 29), At("w01-mon", 2024, 12, 30), At("w01-wed", 2025, 1, 1), At("w01-sun", 2025, 1, 5),
            At("w02-mon", 2025, 1, 6),
        };
        Assert.Equal(new[] { "w01-sun", "w02-mon" }, Kept(new RetentionPolicy { KeepWeekly = 2 }, all));
        Assert.Equal(new[] { "w01-sun", "w02-mon", "w52-sun" }, Kept(new RetentionPolicy { KeepWeekly = 3 }, all));
        var w53 = new[] { At("thu", 2020, 12, 31), At("sun", 2021, 1, 3), At("mon", 2021, 1, 4), At("prev", 2020, 12, 27) };
        Assert.Equal(new[] { "mon", "sun" }, Kept(new RetentionPolicy { KeepWeekly = 2 }, w53));
    }

    [Fact]
    public void KeepMonthlyKeepsTheNewestOfEachMonth()
    {
        var all = new[] { At("jan1", 2024, 1, 1), At("jan31", 2024, 1, 31), At("feb", 2024, 2, 10), At("dec", 2023, 12, 31), At("mar", 2024, 3, 1) };
        Assert.Equal(new[] { "feb", "jan31", "mar" }, Kept(new RetentionPolicy { KeepMonthly = 3 }, all));
    }

    [Fact]
    public void RulesAreAUnion()
    {
        var all = new[]
        {
            At("old-month", 2023, 11, 15), At("dec-a", 2023, 12, 1), At("dec-b", 2023, 12, 20),
            At("jan-1", 2024, 1, 10, 1), At("jan-2", 2024, 1, 10, 2), At("jan-3", 2024, 1, 11),
        };
        var policy = new RetentionPolicy { KeepLast = 1, KeepDaily = 2, KeepMonthly = 3 };
        // last: jan-3; daily: jan-3, jan-2; monthly: jan-3, dec-b, old-month.
        Assert.Equal(new[] { "dec-b", "jan-2", "jan-3", "old-month" }, Kept(policy, all));
    }

    [Fact]
    public void EmptyPolicyThrows()
    {
        Assert.True(new RetentionPolicy().IsEmpty);
        Assert.True(new RetentionPolicy { KeepLast = -1 }.IsEmpty);
        Assert.Throws<InvalidOperationException>(() => new RetentionPolicy().SelectKept(new[] { At("a", 2024, 1, 1) }));
        Assert.Empty(new RetentionPolicy { KeepLast = 3 }.SelectKept(Array.Empty<(string, DateTime)>()));
    }
}
