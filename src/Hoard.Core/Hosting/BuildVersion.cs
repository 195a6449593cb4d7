using System.Reflection;

namespace Hoard.Core.Hosting;

/// <summary>
/// This build's version and the git commit it was built from, as the SDK records them ("1.0.0+&lt;commit&gt;" in the
/// informational version): read once, for `hoard version`, /_hoard/status and hoard_build_info.
/// </summary>
public static class BuildVersion
{
    private static readonly string Informational =
        typeof(BuildVersion).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion ?? "0.0.0";

    public static string Version { get; } = Informational.Split('+')[0];

    /// <summary>The full commit id, or null when the build was made outside a git checkout.</summary>
    public static string? Commit { get; } = Informational.IndexOf('+', StringComparison.Ordinal) is var plus and >= 0 ? Informational[(plus + 1)..] : null;
}
