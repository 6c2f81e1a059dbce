namespace DiffusionCore.Bench.Lab;

/// <summary>The <c>lab</c> mode: kernel variants side by side, single-threaded, by thread CPU time.</summary>
internal static class ConvLab
{
    public static int Run(string[] args)
    {
        switch (args)
        {
            case ["conv-micro"]:
                ConvMicroLab.Run();
                return 0;
            case ["conv", .. var rest]:
                return ConvPassLab.Run(rest);
            default:
                Console.Error.WriteLine("usage: lab conv-micro | lab conv [K3 K4 ...] [reps=N]");
                return 2;
        }
    }
}
