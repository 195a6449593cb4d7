using Hoard.Core.Warm;
using Hoard.Tests.Infrastructure;

namespace Hoard.Tests.Unit;

/// <summary>What `hoard warm` reads from users' files, and which files of a page a pin means.</summary>
public sealed class WarmParsingTests
{
    [Fact]
    public void Requirements_keep_exact_pins_with_their_hashes_follow_includes_and_report_the_rest()
    {
        using var temp = new TempDir();
        File.WriteAllText(Path.Combine(temp.Path, "base.txt"), "idna==3.7 ; python_version >= \"3.8\"\n");
        var hash = new string('a', 64);
        File.WriteAllText(Path.Combine(temp.Path, "requirements.txt"), $"""
            --index-url https://index.example/simple
            -rbase.txt
            certifi==2024.2.2 \
                --hash=sha256:{hash} \
                --hash=sha256:{new string('B', 64)}
            requests[socks]==2.31.0  # via app
            # a comment that ends in a backslash is not joined \
            six==1.16.0
            loose>=1.0
            ranged==1.0,<2
            -e ./src/app
            https://host.example/pkg.whl
            --what
            last==1.0 \
            """);
        var problems = new List<Hoard.WarmSources.Problem>();
        var packages = Hoard.WarmSources.Requirements(Path.Combine(temp.Path, "requirements.txt"), problems);
        Assert.Equal(["idna==3.7", "certifi==2024.2.2", "requests==2.31.0", "six==1.16.0", "last==1.0"], packages.Select(p => $"{p.Project}=={p.Version}"));
        Assert.Equal([hash, new string('b', 64)], packages[1].Sha256);
        Assert.Empty(packages[2].Sha256);
        Assert.Equal(5, problems.Count);
        Assert.Contains(problems, p => p.Where.EndsWith(":9", StringComparison.Ordinal) && p.Why.Contains("'loose' is not pinned", StringComparison.Ordinal));
        Assert.Contains(problems, p => p.Where.EndsWith(":10", StringComparison.Ordinal) && p.Why.Contains("'ranged' is not pinned", StringComparison.Ordinal));
        Assert.Equal(2, problems.Count(p => p.Why.StartsWith("not from an index", StringComparison.Ordinal)));
        Assert.Contains(problems, p => p.Why == "unknown option '--what' ignored");
    }

    [Fact]
    public void Pylock_and_uv_lock_give_exactly_the_files_they_list()
    {
        using var temp = new TempDir();
        var pylock = Path.Combine(temp.Path, "pylock.toml");
        File.WriteAllText(pylock, """
            lock-version = "1.0"
            created-by = "pip"
            [[packages]]
            name = "attrs"
            version = "23.2.0"
            index = "https://index.example/simple"
            wheels = [{ name = "attrs-23.2.0-py3-none-any.whl", url = "https://files.example/attrs-23.2.0-py3-none-any.whl", hashes = { sha256 = "AB" } }]
            [[packages]]
            name = "local-thing"
            directory = { path = "." }
            """);
        var problems = new List<Hoard.WarmSources.Problem>();
        var packages = Hoard.WarmSources.Lock(pylock, problems);
        var attrs = Assert.Single(packages);
        Assert.Equal(("attrs", "23.2.0"), (attrs.Project, attrs.Version));
        Assert.Equal(["attrs-23.2.0-py3-none-any.whl"], attrs.Files);
        Assert.Equal(["ab"], attrs.Sha256);
        Assert.Empty(problems);

        var uv = Path.Combine(temp.Path, "uv.lock");
        File.WriteAllText(uv, """
            version = 1
            [[package]]
            name = "idna"
            version = "3.7"
            source = { registry = "https://index.example/simple" }
            sdist = { url = "https://files.example/idna-3.7.tar.gz", hash = "sha256:cd", size = 10 }
            wheels = [
                { url = "https://files.example/idna-3.7-py3-none-any.whl", hash = "sha256:ef", size = 5 },
            ]
            [[package]]
            name = "app"
            version = "0.1.0"
            source = { editable = "." }
            """);
        packages = Hoard.WarmSources.Lock(uv, problems);
        var idna = Assert.Single(packages);
        Assert.Equal(["idna-3.7.tar.gz", "idna-3.7-py3-none-any.whl"], idna.Files);
        Assert.Equal(["cd", "ef"], idna.Sha256);
        Assert.Empty(problems);

        File.WriteAllText(uv, "not = [toml");
        Assert.Empty(Hoard.WarmSources.Lock(uv, problems));
        Assert.StartsWith("not TOML", Assert.Single(problems).Why, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("alpine", "docker.io/library/alpine", "latest")]
    [InlineData("team/app:1.4", "docker.io/team/app", "1.4")]
    [InlineData("docker://registry.example:5000/team/app:v2", "registry.example:5000/team/app", "v2")]
    [InlineData("localhost/app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", "localhost/app", "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")]
    [InlineData("ghcr.io/org/tool:1@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", "ghcr.io/org/tool", "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")]
    public void Image_references_are_read_as_docker_reads_them(string text, string name, string reference)
    {
        var parsed = ImageReference.Parse(text);
        Assert.Equal(new ImageReference(name, reference), parsed);
    }

    [Theory]
    [InlineData("")]
    [InlineData("a/../b")]
    [InlineData("a b")]
    [InlineData("x?y=1")]
    [InlineData("team/%2e%2e/app")]
    [InlineData("app@sha256:../../_hoard/pins")]
    [InlineData("app:v1/../../x")]
    [InlineData("app:-bad")]
    public void Bad_image_references_are_refused(string text) => Assert.Null(ImageReference.Parse(text));

    [Theory]
    [InlineData("manylinux_2_17_x86_64", "manylinux_2_28_x86_64", true)]
    [InlineData("manylinux2014_x86_64", "manylinux_2_28_x86_64", true)]
    [InlineData("manylinux1_x86_64", "manylinux2014_x86_64", true)]
    [InlineData("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", false)]
    [InlineData("manylinux_2_17_aarch64", "manylinux_2_28_x86_64", false)]
    [InlineData("musllinux_1_1_x86_64", "musllinux_1_2_x86_64", true)]
    [InlineData("manylinux_2_17_x86_64", "musllinux_1_2_x86_64", false)]
    [InlineData("macosx_11_0_arm64", "macosx_14_0_arm64", true)]
    [InlineData("macosx_10_9_universal2", "macosx_14_0_arm64", true)]
    [InlineData("macosx_10_9_x86_64", "macosx_14_0_arm64", false)]
    [InlineData("macosx_15_0_arm64", "macosx_14_0_arm64", false)]
    [InlineData("win_amd64", "win_amd64", true)]
    [InlineData("win32", "win_amd64", false)]
    public void Platform_tags_fit_as_pip_reads_platform(string tag, string wanted, bool fits) =>
        Assert.Equal(fits, DistributionFiles.PlatformFits(tag, wanted));

    [Fact]
    public void A_pin_means_its_version_files_filtered_like_pip_download()
    {
        string[] page =
        [
            "numpy-2.0.0-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
            "numpy-2.0.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
            "numpy-2.0.0-cp312-cp312-win_amd64.whl",
            "numpy-2.0.0.tar.gz",
            "numpy-2.0.1-cp312-cp312-win_amd64.whl",
            "cryptography-42.0.0-cp39-abi3-manylinux_2_28_x86_64.whl",
            "Old-Name-1.0.zip",
        ];
        List<string> Pick(string project, string version, string[] python, string[] platforms, string[]? files = null) =>
            DistributionFiles.Select(page, f => f, _ => null, new WarmPackage(project, version) { Files = [.. files ?? []] }, python, platforms);

        Assert.Equal(4, Pick("numpy", "2.0", [], []).Count); // 2.0 == 2.0.0
        Assert.Equal(["numpy-2.0.0-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"], Pick("numpy", "2.0.0", ["3.12"], ["manylinux2014_x86_64"]));
        Assert.Equal(["numpy-2.0.0.tar.gz"], Pick("numpy", "2.0.0", ["3.10"], []));  // no wheel fits: pip builds from the sdist
        Assert.Single(Pick("cryptography", "42.0.0", ["3.12"], ["manylinux_2_28_x86_64"])); // abi3 from 3.9 on
        Assert.Empty(Pick("cryptography", "42.0.0", ["3.8"], ["manylinux_2_28_x86_64"]));
        Assert.Equal(["Old-Name-1.0.zip"], Pick("old-name", "1.0", [], []));
        Assert.Equal(["numpy-2.0.0-cp312-cp312-win_amd64.whl"], Pick("numpy", "2.0.0", [], [], ["numpy-2.0.0-cp312-cp312-win_amd64.whl"]));
    }
}
