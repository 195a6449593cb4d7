using System.Net;
using Hoard.Core.Configuration;
using Hoard.Core.Upstream;

namespace Hoard.Tests.Unit;

/// <summary>The address ranges the connection policy refuses, and --allow-upstream-host as written on the command line.</summary>
public sealed class ConnectionPolicyUnitTests
{
    [Theory]
    [InlineData("127.0.0.1", "loopback")]
    [InlineData("127.255.0.9", "loopback")]
    [InlineData("::1", "loopback")]
    [InlineData("::ffff:127.0.0.1", "loopback")]
    [InlineData("64:ff9b::7f00:1", "loopback")]
    [InlineData("0.0.0.0", "unspecified")]
    [InlineData("::", "unspecified")]
    [InlineData("169.254.169.254", "link-local")]
    [InlineData("fe80::1", "link-local")]
    [InlineData("10.1.2.3", "private")]
    [InlineData("172.16.0.1", "private")]
    [InlineData("172.31.255.255", "private")]
    [InlineData("192.168.1.1", "private")]
    [InlineData("::ffff:192.168.1.1", "private")]
    [InlineData("fc00::1", "private")]
    [InlineData("fd12:3456::1", "private")]
    [InlineData("100.64.0.1", "shared (CGNAT)")]
    [InlineData("100.127.255.254", "shared (CGNAT)")]
    [InlineData("8.8.8.8", null)]
    [InlineData("172.32.0.1", null)]
    [InlineData("100.128.0.1", null)]
    [InlineData("151.101.0.223", null)]
    [InlineData("2a04:4e42::223", null)]
    public void Address_ranges(string address, string? range) =>
        Assert.Equal(range, ConnectionPolicy.ForbiddenRange(IPAddress.Parse(address)));

    [Theory]
    [InlineData("127.0.0.1:8080", "127.0.0.1", 8080)]
    [InlineData("Mirror.Corp.", "mirror.corp", null)]
    [InlineData("mirror.corp:443", "mirror.corp", 443)]
    [InlineData("[::1]:5000", "::1", 5000)]
    [InlineData("[::1]", "::1", null)]
    [InlineData("fd00::5", "fd00::5", null)]
    [InlineData("::ffff:10.0.0.1", "10.0.0.1", null)]
    public void Allowed_hosts(string text, string host, int? port)
    {
        Assert.Null(AllowedUpstreamHost.TryParse(text, out var allowed));
        Assert.Equal(new AllowedUpstreamHost(host, port), allowed);
    }

    [Theory]
    [InlineData("http://mirror.corp/")]
    [InlineData("mirror.corp:0")]
    [InlineData("mirror.corp:http")]
    [InlineData("fd00::5:8080:x")]
    [InlineData("")]
    [InlineData("[::1")]
    public void Bad_allowed_hosts_are_refused_with_a_message(string text) =>
        Assert.Contains("--allow-upstream-host", AllowedUpstreamHost.TryParse(text, out _), StringComparison.Ordinal);

    [Fact]
    public void Configured_upstreams_and_allowed_hosts_pass_and_everything_else_private_is_refused()
    {
        var options = new HoardOptions();
        Assert.Null(UpstreamSpec.TryParse("internal=http://10.0.0.5:8080/simple/", false, out var spec, out _));
        options.Pypi.Add(spec!);
        Assert.Null(AllowedUpstreamHost.TryParse("cache.corp", out var allowed));
        options.AllowUpstreamHosts.Add(allowed!);
        var policy = new ConnectionPolicy(options, proxy: null);
        IPAddress[] privateAddress = [IPAddress.Parse("10.0.0.5")];

        Assert.Null(policy.Refusal("http", "10.0.0.5", 8080, privateAddress));
        Assert.NotNull(policy.Refusal("https", "10.0.0.5", 8080, privateAddress));
        Assert.NotNull(policy.Refusal("http", "10.0.0.5", 8081, privateAddress));
        Assert.Null(policy.Refusal("http", "CACHE.corp", 9999, privateAddress));
        Assert.NotNull(policy.Refusal("http", "rebinding.example", 80, [IPAddress.Parse("93.184.215.14"), IPAddress.Parse("127.0.0.1")]));
        Assert.Null(policy.Refusal("https", "files.example", 443, [IPAddress.Parse("93.184.215.14")]));
    }
}
