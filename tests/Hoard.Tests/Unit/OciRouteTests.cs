using Hoard.Core.Configuration;
using Hoard.Core.Oci;

namespace Hoard.Tests.Unit;

public sealed class OciRouteTests
{
    private static HoardOptions Options()
    {
        var o = new HoardOptions();
        o.Registries.Add(new UpstreamSpec("ghcr.io", new Uri("https://ghcr.io/")));
        o.Registries.Add(new UpstreamSpec("local", new Uri("http://127.0.0.1:5000/")));
        return o;
    }

    [Theory]
    [InlineData("alpine/manifests/3.20", null, "docker.io", "library/alpine", "3.20")]
    [InlineData("docker.io/alpine/manifests/3.20", null, "docker.io", "library/alpine", "3.20")]
    [InlineData("bitnami/redis/manifests/7", null, "docker.io", "bitnami/redis", "7")]
    [InlineData("ghcr.io/org/app/manifests/v1", null, "ghcr.io", "org/app", "v1")]
    [InlineData("org/app/manifests/v1", "ghcr.io", "ghcr.io", "org/app", "v1")]
    [InlineData("team/app/blobs/sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", "127.0.0.1:5000", "local", "team/app", "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")]
    [InlineData("alpine/manifests/latest", "registry-1.docker.io", "docker.io", "library/alpine", "latest")]
    public void Three_dialects_pick_the_registry_and_repository(string rest, string? ns, string registry, string repository, string reference)
    {
        var (target, error) = OciRoute.Parse(rest, ns, Options());
        Assert.Null(error);
        Assert.Equal((registry, repository, reference), (target!.Registry.Name, target.Repository, target.Reference));
    }

    [Fact]
    public void Tags_list_and_unknown_registries()
    {
        var (target, _) = OciRoute.Parse("ghcr.io/org/app/tags/list", null, Options());
        Assert.Equal(OciKind.TagsList, target!.Kind);
        Assert.Equal("NAME_UNKNOWN", OciRoute.Parse("quay.io/org/app/manifests/v1", null, Options()).Error!.Code);
        Assert.Equal("NAME_UNKNOWN", OciRoute.Parse("org/app/manifests/v1", "quay.io", Options()).Error!.Code);
    }

    [Fact]
    public void Token_challenges_parse_with_commas_inside_quotes()
    {
        var p = RegistryAuthenticator.Parse("realm=\"https://auth.docker.io/token\",service=\"registry.docker.io\",scope=\"repository:library/alpine:pull,push\"");
        Assert.Equal("https://auth.docker.io/token", p["realm"]);
        Assert.Equal("registry.docker.io", p["service"]);
        Assert.Equal("repository:library/alpine:pull,push", p["scope"]);
    }
}
