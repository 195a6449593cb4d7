namespace Hoard.Core.Http;

public enum RangeKind
{
    None,
    Satisfiable,
    Unsatisfiable,
}

/// <summary>Single "bytes=" ranges (RFC 9110 §14.1.2). Multiple ranges are answered with the whole body.</summary>
public static class ByteRange
{
    public static RangeKind Parse(string? header, long length, out long start, out long endExclusive)
    {
        start = 0;
        endExclusive = length;
        if (string.IsNullOrEmpty(header))
        {
            return RangeKind.None;
        }
        var span = header.AsSpan().Trim();
        if (!span.StartsWith("bytes=", StringComparison.OrdinalIgnoreCase) || span.Contains(','))
        {
            return RangeKind.None;
        }
        span = span[6..].Trim();
        var dash = span.IndexOf('-');
        if (dash < 0)
        {
            return RangeKind.None;
        }
        var first = span[..dash].Trim();
        var last = span[(dash + 1)..].Trim();
        if (first.IsEmpty)
        {
            // Suffix range: the last N bytes.
            if (!long.TryParse(last, out var suffix) || suffix < 0)
            {
                return RangeKind.None;
            }
            if (suffix == 0 || length == 0)
            {
                return RangeKind.Unsatisfiable;
            }
            start = Math.Max(0, length - suffix);
            return RangeKind.Satisfiable;
        }
        if (!long.TryParse(first, out start) || start < 0)
        {
            return RangeKind.None;
        }
        if (!last.IsEmpty)
        {
            if (!long.TryParse(last, out var lastByte) || lastByte < start)
            {
                return RangeKind.None;
            }
            endExclusive = Math.Min(length, lastByte + 1);
        }
        return start >= length ? RangeKind.Unsatisfiable : RangeKind.Satisfiable;
    }
}
