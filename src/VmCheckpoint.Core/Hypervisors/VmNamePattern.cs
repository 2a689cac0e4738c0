using System;
using System.Collections.Generic;
using System.Linq;
using System.Text;
using System.Text.RegularExpressions;

namespace VmCheckpoint.Core.Hypervisors
{
    /// <summary>
    /// A VM name with PowerShell's wildcards, as cmdlets and schedules alike take them: * any run, ? one character,
    /// [abc] and [a-z] one of a set, a backtick escapes the next character; case-insensitive. A name without
    /// wildcards means that VM itself, whether the host lists it or not (so that a missing VM is an error, not nothing).
    /// </summary>
    public sealed class VmNamePattern
    {
        private readonly Regex? _regex;

        public VmNamePattern(string pattern)
        {
            Pattern = pattern ?? throw new ArgumentNullException(nameof(pattern));
            _regex = HasWildcards(pattern) ? new Regex(ToRegex(pattern), RegexOptions.IgnoreCase | RegexOptions.CultureInvariant | RegexOptions.Singleline) : null;
        }

        public string Pattern { get; }

        public bool IsWildcard => _regex != null;

        /// <summary>The name itself, with escapes removed, when the pattern has no wildcards.</summary>
        public string LiteralName => Unescape(Pattern);

        public bool IsMatch(string name) => _regex != null ? _regex.IsMatch(name) : string.Equals(name, LiteralName, StringComparison.OrdinalIgnoreCase);

        /// <summary>True when <paramref name="pattern"/> holds an unescaped *, ? or [.</summary>
        public static bool HasWildcards(string pattern)
        {
            for (int i = 0; i < pattern.Length; i++)
            {
                char c = pattern[i];
                if (c == '`') { i++; continue; }
                if (c == '*' || c == '?' || c == '[') return true;
            }
            return false;
        }

        /// <summary>
        /// The VMs the patterns name, each once, in the order given: wildcards expand over <paramref name="listVms"/>
        /// (asked once, only if a pattern has wildcards); plain names stand for themselves.
        /// </summary>
        public static List<string> Expand(IEnumerable<string> patterns, Func<IReadOnlyList<string>> listVms)
        {
            IReadOnlyList<string>? all = null;
            var result = new List<string>();
            foreach (var p in patterns.Select(p => new VmNamePattern(p)))
            {
                IEnumerable<string> names = p.IsWildcard ? (all ??= listVms()).Where(p.IsMatch) : new[] { p.LiteralName };
                foreach (var n in names)
                    if (!result.Contains(n, StringComparer.Ordinal)) result.Add(n);
            }
            return result;
        }

        private static string Unescape(string pattern)
        {
            var sb = new StringBuilder(pattern.Length);
            for (int i = 0; i < pattern.Length; i++)
            {
                if (pattern[i] == '`' && i + 1 < pattern.Length) i++;
                sb.Append(pattern[i]);
            }
            return sb.ToString();
        }

        private static string ToRegex(string pattern)
        {
            var sb = new StringBuilder("^");
            for (int i = 0; i < pattern.Length; i++)
            {
                char c = pattern[i];
                if (c == '`' && i + 1 < pattern.Length) { sb.Append(Regex.Escape(pattern[++i].ToString())); continue; }
                if (c == '*') { sb.Append(".*"); continue; }
                if (c == '?') { sb.Append('.'); continue; }
                if (c == '[')
                {
                    int end = pattern.IndexOf(']', i + 1);
                    if (end > i + 1)
                    {
                        sb.Append('[');
                        string set = pattern.Substring(i + 1, end - i - 1);
                        foreach (char s in set) sb.Append(s == '-' ? "-" : Regex.Escape(s.ToString()).Replace("]", "\\]"));
                        sb.Append(']');
                        i = end;
                        continue;
                    }
                }
                sb.Append(Regex.Escape(c.ToString()));
            }
            return sb.Append('$').ToString();
        }
    }
}
