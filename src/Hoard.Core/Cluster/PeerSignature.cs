using System.Globalization;
using System.Security.Cryptography;
using System.Text;

namespace Hoard.Core.Cluster;

/// <summary>
/// Signs requests between cluster nodes: <c>X-Hoard-Peer: v1 {unix seconds} {node id} {hex HMAC-SHA256}</c>, the HMAC
/// of the cluster secret over the method, path, Range, what the request is for, the requesting node, the node asked
/// and the time. A signed request cannot be replayed for another blob, another range, another purpose, by another node
/// or to another node, and is good for a minute either side of this node's clock.
/// </summary>
public sealed class PeerSignature(byte[] secret, TimeProvider time)
{
    public const string Header = "X-Hoard-Peer";
    public const string ForHeader = "X-Hoard-Peer-For";
    private static readonly TimeSpan Skew = TimeSpan.FromSeconds(60);

    public enum Check
    {
        Valid,
        Malformed,
        Expired,
        Forged,
    }

    public string Sign(string method, string path, string? range, string purpose, string node, string target)
    {
        var ts = time.GetUtcNow().ToUnixTimeSeconds().ToString(CultureInfo.InvariantCulture);
        return $"v1 {ts} {node} {Convert.ToHexStringLower(Mac(method, path, range, purpose, node, target, ts))}";
    }

    /// <summary>Checks a header; never throws for what a client sent.</summary>
    public Check Verify(string? header, string method, string path, string? range, string purpose, string self, out string node)
    {
        node = "";
        var parts = header?.Split(' ') ?? [];
        if (parts.Length != 4 || parts[0] != "v1" || !long.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out var ts)
            || !ClusterNode.IsNodeId(parts[2]) || parts[3].Length != 64 || !parts[3].All(char.IsAsciiHexDigitLower))
        {
            return Check.Malformed;
        }
        node = parts[2];
        if (Math.Abs(time.GetUtcNow().ToUnixTimeSeconds() - ts) > Skew.TotalSeconds)
        {
            return Check.Expired;
        }
        var expected = Mac(method, path, range, purpose, parts[2], self, parts[1]);
        return CryptographicOperations.FixedTimeEquals(expected, Convert.FromHexString(parts[3])) ? Check.Valid : Check.Forged;
    }

    private byte[] Mac(string method, string path, string? range, string purpose, string node, string target, string ts) =>
        HMACSHA256.HashData(secret, Encoding.UTF8.GetBytes($"{method}\n{path}\n{range}\n{purpose}\n{node}\n{target}\n{ts}"));
}
