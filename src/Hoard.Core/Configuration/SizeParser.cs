using System.Globalization;

namespace Hoard.Core.Configuration;

/// <summary>Parses human sizes ("50GB", "512MiB", "1.5T", "1048576") and durations ("300", "5m", "1h30m", "250ms").</summary>
public static class ValueParsers
{
    private static readonly (string Suffix, double Factor)[] SizeSuffixes =
    [
        ("KIB", 1024d), ("MIB", 1024d * 1024), ("GIB", 1024d * 1024 * 1024), ("TIB", 1024d * 1024 * 1024 * 1024),
        ("KB", 1e3), ("MB", 1e6), ("GB", 1e9), ("TB", 1e12),
        ("K", 1e3), ("M", 1e6), ("G", 1e9), ("T", 1e12), ("B", 1),
    ];

    public static bool TryParseSize(string text, out long bytes)
    {
        bytes = 0;
        var s = text.Trim().ToUpperInvariant();
        double factor = 1;
        foreach (var (suffix, f) in SizeSuffixes)
        {
            if (s.EndsWith(suffix, StringComparison.Ordinal))
            {
                factor = f;
                s = s[..^suffix.Length].Trim();
                break;
            }
        }
        if (!double.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out var number) || number < 0 || double.IsInfinity(number))
        {
            return false;
        }
        var value = number * factor;
        if (value > long.MaxValue)
        {
            return false;
        }
        bytes = (long)value;
        return true;
    }

    /// <summary>A bare number is seconds; otherwise a sequence of number+unit (ms, s, m, h, d).</summary>
    public static bool TryParseDuration(string text, out TimeSpan duration)
    {
        duration = TimeSpan.Zero;
        var s = text.Trim().ToLowerInvariant();
        if (s.Length == 0)
        {
            return false;
        }
        if (double.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out var seconds))
        {
            if (seconds < 0)
            {
                return false;
            }
            duration = TimeSpan.FromSeconds(seconds);
            return true;
        }
        var i = 0;
        var total = TimeSpan.Zero;
        while (i < s.Length)
        {
            var start = i;
            while (i < s.Length && (char.IsAsciiDigit(s[i]) || s[i] == '.'))
            {
                i++;
            }
            if (start == i || !double.TryParse(s.AsSpan(start, i - start), NumberStyles.Float, CultureInfo.InvariantCulture, out var n))
            {
                return false;
            }
            var unitStart = i;
            while (i < s.Length && char.IsAsciiLetter(s[i]))
            {
                i++;
            }
            TimeSpan part;
            switch (s[unitStart..i])
            {
                case "ms": part = TimeSpan.FromMilliseconds(n); break;
                case "s": part = TimeSpan.FromSeconds(n); break;
                case "m": part = TimeSpan.FromMinutes(n); break;
                case "h": part = TimeSpan.FromHours(n); break;
                case "d": part = TimeSpan.FromDays(n); break;
                default: return false;
            }
            total += part;
        }
        duration = total;
        return true;
    }

    public static string FormatSize(long bytes)
    {
        string[] units = ["B", "KiB", "MiB", "GiB", "TiB"];
        double v = bytes;
        var u = 0;
        while (v >= 1024 && u < units.Length - 1)
        {
            v /= 1024;
            u++;
        }
        return u == 0 ? $"{bytes} B" : string.Create(CultureInfo.InvariantCulture, $"{v:0.#} {units[u]}");
    }
}
