// Command chartgen writes the templates of the Helm chart in
// charts/log-capturer from the same kustomize output that dist/install.yaml
// is (make chart): the objects of config/agent (--capture=auto), those of
// config/default (--capture=api) to tell which parts belong to the agents,
// config/prometheus and the Grafana dashboard. Values replace only the fields
// a rule below names; with the default values the chart renders the objects
// of dist/install.yaml (test/chart checks it), so the two cannot drift.
package main

import (
	"flag"
	"fmt"
	"os"
)

func main() {
	auto := flag.String("auto", "", "kustomize build of config/agent")
	api := flag.String("api", "", "kustomize build of config/default")
	monitoring := flag.String("prometheus", "", "kustomize build of config/prometheus")
	dashboard := flag.String("dashboard", "config/grafana/log-capturer-dashboard.json", "the Grafana dashboard")
	out := flag.String("out", "charts/log-capturer", "the chart's directory")
	flag.Parse()
	if err := run(*auto, *api, *monitoring, *dashboard, *out); err != nil {
		fmt.Fprintln(os.Stderr, "chartgen:", err)
		os.Exit(1)
	}
}

// run reads the inputs and writes the generated files of the chart.
func run(autoPath, apiPath, monitoringPath, dashboardPath, out string) error {
	read := func(path string) ([]object, error) {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", path, err)
		}
		return parse(b)
	}
	auto, err := read(autoPath)
	if err != nil {
		return err
	}
	api, err := read(apiPath)
	if err != nil {
		return err
	}
	monitoring, err := read(monitoringPath)
	if err != nil {
		return err
	}
	dash, err := os.ReadFile(dashboardPath)
	if err != nil {
		return fmt.Errorf("reading %s: %w", dashboardPath, err)
	}
	files, err := generate(auto, api, monitoring)
	if err != nil {
		return err
	}
	files["files/log-capturer-dashboard.json"] = dash
	return write(out, files)
}
