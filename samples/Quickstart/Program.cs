// DiffusionCore quick start: train a DDPM on a 2-D toy set, sample it, score the samples, compute an
// exact likelihood through the probability-flow ODE, and save a plot. Runs in a few seconds on a CPU.
using DiffusionCore.Engine;
using DiffusionCore.Models.Networks;
using DiffusionCore.Models.Processes;
using DiffusionCore.Models.Score;
using DiffusionCore.Sampling.Likelihood;
using DiffusionCore.Sampling.Samplers;
using DiffusionCore.Training;
using DiffusionCore.Training.Data;
using DiffusionCore.Training.Metrics;
using DiffusionCore.Training.Objectives;
using DiffusionCore.Training.Plotting;

int steps = args.Length > 0 ? int.Parse(args[0]) : 1500;
var rng = new Generator(seed: 42);
var net = new Mlp2d(rng.Split(1));                        // the mlp-2d score network (37,762 parameters)
var schedule = DdpmSchedule.Linear(1000);                  // betas 1e-4 .. 0.02 (Ho et al. 2020)

// Train with L_simple; every batch and noise draw comes from the trainer's generator.
var trainer = new Trainer(net, g => DdpmObjective.SimpleLoss(net, schedule, Toy2d.Batch(Toy2dKind.EightGaussians, 256, g), g),
    new TrainerOptions { Steps = steps, LearningRate = 2e-3, WarmupSteps = 100 }, rng.Split(2));
trainer.Run(new Progress<TrainingProgress>(p => { if (p.Step % 500 == 0) Console.WriteLine($"step {p.Step}: loss {p.Loss:F4}"); }));
trainer.Ema!.CopyTo(net.Parameters());

// Sample with DDPM's ancestral sampler, through the ScoreModel every sampler takes.
var model = ScoreModel.FromNetwork(net, Parameterisation.Epsilon);
var samples = DdpmAncestral.Sample(model, schedule, [2000, 2], rng.Split(3));
var data = Toy2d.Sample(Toy2dKind.EightGaussians, 2000, seed: 7);
Console.WriteLine($"energy distance to the data: {SampleDistance.EnergyDistance(samples.ToArray(), data, 2):F4}");

// Exact log-likelihood of held-out points: this schedule discretises the VP SDE (beta 0.1 .. 20).
var heldOut = Toy2d.Batch(Toy2dKind.EightGaussians, 200, new Generator(9));
var result = ProbabilityFlowLikelihood.LogLikelihood(model, new VpSde(), heldOut, rng.Split(4), new LikelihoodOptions { Divergence = DivergenceMethod.Exact });
Console.WriteLine($"held-out NLL: {-result.LogLikelihood.Average():F3} nats ({result.FunctionEvaluations} network evaluations)");

ScatterPlot.Save("quickstart.png", [new ScatterPanel("data", data, Rgb.Palette[0]), new ScatterPanel("samples", samples.ToArray(), Rgb.Palette[1])]);
Console.WriteLine("wrote quickstart.png");
