using Hoard.Core.Metrics;

namespace Hoard.Core.Http;

/// <summary>
/// RFC 9211 Cache-Status values, plus a plain X-Hoard-Cache word for people reading curl output.
/// Precomputed: these headers are on every response.
/// </summary>
public static class CacheStatusHeader
{
    private static readonly string[] Status = Enum.GetValues<CacheOutcome>().Select(o => o switch
    {
        CacheOutcome.Hit => "hoard; hit",
        CacheOutcome.Miss => "hoard; fwd=miss; stored",
        CacheOutcome.Coalesced => "hoard; fwd=miss; collapsed",
        CacheOutcome.Revalidated => "hoard; fwd=stale; fwd-status=304",
        CacheOutcome.Stale => "hoard; hit; detail=stale-upstream-failed",
        CacheOutcome.Bypass => "hoard; fwd=bypass; detail=store-unavailable",
        CacheOutcome.Error => "hoard; fwd=miss; detail=error",
        CacheOutcome.Peer => "hoard; fwd=miss; stored; detail=peer",
        CacheOutcome.Discovery => "hoard; fwd=bypass; detail=discovery",
        _ => "hoard",
    }).ToArray();

    private static readonly string[] Word = Enum.GetValues<CacheOutcome>().Select(o => o.ToString().ToUpperInvariant()).ToArray();

    public static void Apply(Microsoft.AspNetCore.Http.HttpResponse response, CacheOutcome outcome)
    {
        response.Headers["Cache-Status"] = Status[(int)outcome];
        response.Headers["X-Hoard-Cache"] = Word[(int)outcome];
    }
}
