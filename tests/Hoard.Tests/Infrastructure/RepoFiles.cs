namespace Hoard.Tests.Infrastructure;

/// <summary>Files of this repository (deploy/, bench/), found from the test's output directory upwards.</summary>
public static class RepoFiles
{
    public static string Root { get; } = FindRoot();

    public static string PathOf(string relative) => Path.Combine(Root, relative);

    private static string FindRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "Hoard.sln")))
            {
                return dir.FullName;
            }
        }
        throw new InvalidOperationException("no Hoard.sln above " + AppContext.BaseDirectory);
    }
}
