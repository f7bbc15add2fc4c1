return Engine.Cli.EngineCli.Run(args, Console.Out, Console.Error);
