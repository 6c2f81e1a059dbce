// DiffusionCore quick start: train a DDPM on a 2-D toy set, rebuild the model from its checkpoint, sample it
// through the pipeline, score the samples, compute an exact likelihood and save a plot. A few seconds on a CPU.
using DiffusionCore.Engine;
using DiffusionCore.Pipelines;
using DiffusionCore.Plotting;
using DiffusionCore.Sampling.Likelihood;
using DiffusionCore.Training;
using DiffusionCore.Training.Data;
using DiffusionCore.Training.Metrics;

int steps = args.Length > 0 ? int.Parse(args[0]) : 1500;

// mlp-2d trained with DDPM's L_simple on eight Gaussians; checkpoint, CSV log and loss plot go to run/.
var config = ModelConfig.Create("mlp-2d", "8gaussians", "ddpm");
using (var session = TrainingSession.Start(config, new TrainingConfig { Steps = steps, Batch = 256, Seed = 42 }, "run"))
{
    session.Run(new Progress<TrainingProgress>(p => { if (p.Step % 500 == 0) Console.WriteLine($"step {p.Step}: loss {p.Loss:F4}"); }));
}

// The checkpoint alone rebuilds the network, its schedule and its EMA weights; the pipeline samples it.
var model = DiffusionModel.Load("run/checkpoint.safetensors");
var samples = new DiffusionPipeline(model).Generate(new GenerationOptions { Count = 2000, Sampler = "ddim", Steps = 50, Seed = 3 });
var data = Toy2d.Sample(Toy2dKind.EightGaussians, 2000, seed: 7);
Console.WriteLine($"{samples.Description}: energy distance to the data {SampleDistance.EnergyDistance(samples.Samples.ToArray(), data, 2):F4}");

// Exact log-likelihood of held-out points: this DDPM schedule discretises the VP SDE (beta 0.1 .. 20).
var heldOut = Toy2d.Batch(Toy2dKind.EightGaussians, 200, new Generator(9));
var nll = ProbabilityFlowLikelihood.LogLikelihood(model.ScoreModel, model.ContinuousSde!, heldOut, new Generator(4),
    new LikelihoodOptions { Divergence = DivergenceMethod.Exact });
Console.WriteLine($"held-out NLL: {-nll.LogLikelihood.Average():F3} nats ({nll.FunctionEvaluations} network evaluations)");

ScatterPlot.Save("quickstart.png", [new ScatterPanel("data", data, Rgb.Palette[0]), new ScatterPanel("samples", samples.Samples.ToArray(), Rgb.Palette[1])]);
Console.WriteLine("wrote quickstart.png and run/train_loss.png");
