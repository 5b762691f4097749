# steps/stages.sh: stages 0-6 of every recipe (as ESPnet's egs2/TEMPLATE/spk1/spk.sh).
#
# Sourced last by egs/<corpus>/v1/run.sh, which first sets its own options (a default set there
# wins over the one below), defines `prepare_data` (its stage 0: data dirs, trial lists,
# augmentation sources) and, if it needs one, `adjust_options` (run once the command line is
# parsed). Every variable below is also a command-line option of run.sh (`./run.sh --help`).
#
#   0  data: the recipe's prepare_data
#   1  lists: utt2dur of the train and test data dirs, validation, the trial lists exist
#   2  SSL pretraining of the speaker encoder (--ssl-conf)                   -> <exp>/ssl (--skip-ssl true: none)
#      (another --ssl-conf than the recipe's, or --ssl-tag T: <exp>/ssl_T; the pseudo-label systems below likewise
#      get a tag after a non-default --pseudo-conf or --pseudo-tag: <exp>/pl_T_iterN ...; see ssl_tag, pseudo_tag)
#   3  embeddings of the training data (--init-embedder, or a file of them: --init-embeddings) -> k-means
#      (--num-clusters) -> AHC (--ahc-clusters or --ahc-threshold) -> pseudo speakers -> <exp>/pl_iter1/data
#   4  training on the pseudo-labels (--pseudo-conf)                        -> <exp>/pl_iter1
#      (--oracle true: the same training on the true labels                 -> <exp>/oracle)
#   5  iterations 2..num_iters of stages 3-4 (training: --refine-conf)     -> <exp>/pl_iterN
#      (--cluster-model-conf: iteration N clusters the embeddings of <exp>/clusterer_iter(N-1), trained in stage 4/5)
#      then, with --lmft-conf, large-margin fine-tuning of the last iteration's model on its
#      pseudo-labels (the authors' last step; also with --num-iters 1)       -> <exp>/lmft
#   6  evaluation of every system (steps/evaluate.sh): cosine and AS-norm scoring of --trials
#      (+ calibration) and of --extra-trials (--eval-segments N: + the authors' protocol, rows *_seg;
#      --plda true: + Kaldi's LDA/PLDA back-end trained on pseudo-labels, rows *_plda and *_lda)
#      -> <exp>/<system>/results.md, <exp>/results.md,
#      <exp>/iterations.md, DET plots <exp>/det_<trial list>.png

stage=${stage-0}                  # first stage to run
stop_stage=${stop_stage-6}        # last stage to run
nj=${nj-2}                        # parallel jobs (extraction, utt2dur)
device=${device-auto}             # extraction (stages 3, 5, 6): auto (a GPU when the job sees one), cpu or cuda
corpus=${corpus-mycorpus}         # data/<corpus>, exp/<corpus>
train_data=${train_data-}         # default: data/<corpus>/train
test_data=${test_data-}           # default: data/<corpus>/test
trials=${trials-}                 # trial list of --test-data (Kaldi or VoxCeleb format); default: <test-data>/trials
extra_trials=${extra_trials-}     # more trial lists on --test-data, scored with cosine and AS-norm (space-separated)
exp=${exp-}                       # experiment dir; default: exp/<corpus>
baseline_conf=${baseline_conf-conf/baseline.yaml}  # non-learned baseline evaluated in stage 6 (empty: none)
ssl_conf=${ssl_conf-conf/ssl.yaml}          # stage 2
skip_ssl=${skip_ssl-false}              # true: stage 2 is skipped (when nothing after it uses the SSL encoder: --init-embedder
                                        # baseline and --init-from-ssl false); its rows: --stage 2 --stop-stage 2 --skip-ssl false
pseudo_conf=${pseudo_conf-conf/pseudo.yaml}  # stage 4, and stage 5 without --refine-conf
refine_conf=${refine_conf-}             # iterations >= 2 (stage 5), e.g. a short fine-tuning of the previous model; default: --pseudo-conf
cluster_model_conf=${cluster_model_conf-}  # a second model trained on each iteration's pseudo-labels (but the last) with this config,
                                        # <exp>/clusterer<tag>_iterN, whose embeddings the next iteration clusters instead of
                                        # pl<tag>_iterN's (e.g. an encoder trained from audio beside a frozen pretrained one); empty: none
init_embedder=${init_embedder-ssl}      # embeddings seeding the first clustering: ssl (stage 2) or baseline
init_embeddings=${init_embeddings-}     # or a torch.save file {<spk>/<video>/<file>.wav: tensor} (the authors' DINO embeddings): stage 3 clusters these
init_from_ssl=${init_from_ssl-true}     # start the pseudo-label models from the SSL encoder (false: e.g. WavLM configs)
retrain_from=${retrain_from-previous}   # iterations >= 2 start from: previous (the last iteration's model) or initial (as iteration 1: --init-from-ssl's start, false: the config's pretrained model, new head and classes)
lmft_conf=${lmft_conf-}                 # stage 5, last: large-margin fine-tuning config, from <exp>/pl_iter<num_iters> on its pseudo-labels -> <exp>/lmft (empty: none)
num_iters=${num_iters-2}                # pseudo-label iterations (the first in stages 3-4, the others in stage 5)
# Clustering: the defaults are theolepage/wavlm_ssl_sv:pseudo_labeling.py's (cuML KMeans and sklearn
# AgglomerativeClustering with their defaults); a recipe that differs sets its own values in run.sh.
num_clusters=${num_clusters-0}          # k-means clusters; 0: no k-means, AHC of the utterances (small corpora)
cluster_normalize=${cluster_normalize-none}  # none: cluster the raw embeddings (Euclidean); l2: unit-norm ones (cosine)
kmeans_spherical=${kmeans_spherical-false}   # false: Euclidean k-means; true: centroids normalised each iteration
kmeans_init=${kmeans_init-kmeans++}     # k-means seeding: kmeans++ (D^2 sampling; cuML's k-means|| approximates it) or random
kmeans_iters=${kmeans_iters-300}        # k-means iterations at most (cuML's max_iter; both stop earlier once converged)
ahc_clusters=${ahc_clusters-0}          # AHC of the k-means centroids (or utterances) down to this many clusters (0: none)
ahc_threshold=${ahc_threshold-}         # ... or merge while the distance is below this (iteration 1; later ones: as many clusters)
ahc_linkage=${ahc_linkage-ward}         # ward (euclidean, of the centroids as --cluster-normalize leaves them) or average|complete|single (cosine)
standardize=${standardize-false}        # clustering: per-dimension mean/std normalisation of the embeddings first
min_cluster_size=${min_cluster_size-1}  # smaller clusters are dropped (1: every cluster is kept)
true_speakers=${true_speakers-true}     # the training utt2spk holds real speakers: report NMI/purity, DLG-LC accuracy
oracle=${oracle-false}                  # stage 4 also trains on the true labels (supervised reference) -> <exp>/oracle
eval_untrained=${eval_untrained-true}   # stage 6 also evaluates the SSL encoder's initial weights (<exp>/ssl_untrained)
eval_systems=${eval_systems-}           # systems evaluated in stage 6 (default: baseline, ssl_untrained, ssl, pl_iter*, lmft, oracle)
cohort_size=${cohort_size-20000}        # stage 6: score normalisation and AS-norm cohort of this many training utterances
asnorm_cohort=${asnorm_cohort-utt}      # AS-norm cohort: utt (cohort embeddings) or spk (their true-speaker means)
asnorm_top_n=${asnorm_top_n-300}        # AS-norm: closest cohort entries (clipped to the cohort size)
cal_p_target=${cal_p_target-0.5}        # prior of the score calibration objective
eval_max_seconds=${eval_max_seconds-}   # stage 6: test embeddings of the first S seconds of each utterance (empty: all)
eval_segments=${eval_segments-0}        # stage 6: > 0 adds rows *_seg, the authors' protocol with this many windows per utterance
eval_segment_seconds=${eval_segment_seconds-4.015}  # their length (theolepage/wavlm_ssl_sv:DatasetLoader.py)
plda=${plda-false}                      # stage 6: + rows *_plda (LDA + PLDA, kaldi-asr/kaldi:egs/voxceleb/v2) and *_lda (cosine
                                        # after LDA), trained on the cohort with a pl_iterN system's own pseudo-labels, the last
                                        # iteration's for the label-free systems (ssl, baseline), the true ones for oracle only
lda_dim=${lda_dim-200}                  # stage 6 back-end: LDA dimension (Kaldi's egs/voxceleb/v2 value; 0: no LDA)
lda_dim_dev=${lda_dim_dev-}             # or LDA dimensions to choose from ("100 200"): the best on the dev half of the trials
                                        # (+ row test_plda_eval, the other half); empty: --lda-dim
force=${force-false}                    # true: redo the finished steps of the stages run
ssl_args=${ssl_args-}                   # stage 2: more options of train_ssl.py (split at spaces), e.g. "--set train.lr=0.1"
pseudo_args=${pseudo_args-}             # stages 4-5: more options of every train_pseudo.py run (iterations, oracle, lmft)
ssl_tag=${ssl_tag-}                     # SSL system <exp>/ssl_<tag> (default: <exp>/ssl for the recipe's --ssl-conf, else tag = its file name less .yaml and ssl_)
pseudo_tag=${pseudo_tag-}               # pseudo-label systems <exp>/pl_<tag>_iterN, lmft_<tag>, oracle_<tag> (as --ssl-tag, for --pseudo-conf; SSL tag first when they start from it)
# Naming: one exp dir per config, so trying a second config never overwrites (nor is refused by) the first one's.
declare recipe_ssl_conf=$ssl_conf recipe_pseudo_conf=$pseudo_conf   # the recipe's defaults (run.sh, or the ones above)
. utils/parse_options.sh
[ $# -eq 0 ] || { echo "$0: unexpected argument(s): $* (options are --name value; see --help)" >&2; exit 1; }
# the tags follow the command line (a recipe's adjust_options, e.g. voxceleb's --tiny, keeps the default names)
if [ -z "$ssl_tag" ] && [ "$ssl_conf" != "$recipe_ssl_conf" ]; then ssl_tag=$(basename "$ssl_conf" .yaml); ssl_tag=${ssl_tag#ssl_}; fi
if [ -z "$pseudo_tag" ] && [ "$pseudo_conf" != "$recipe_pseudo_conf" ]; then
  pseudo_tag=$(basename "$pseudo_conf" .yaml); pseudo_tag=${pseudo_tag#pseudo_}
fi
! declare -F adjust_options > /dev/null || adjust_options
loop_uses_ssl() {  # true when the pseudo-label loop starts from the SSL encoder or clusters its embeddings
  [ "$init_from_ssl" = true ] || { [ "$init_embedder" = ssl ] && [ -z "$init_embeddings" ]; }
}
case $retrain_from in previous|initial) ;; *) echo "$0: --retrain-from must be previous or initial, got '$retrain_from'" >&2; exit 1;; esac
if [ "$skip_ssl" = true ] && loop_uses_ssl; then
  echo "$0: --skip-ssl true, but the loop uses the SSL encoder (--init-from-ssl $init_from_ssl, --init-embedder $init_embedder):" \
    "set --init-embedder baseline --init-from-ssl false, or --skip-ssl false" >&2
  exit 1
fi

train_data=${train_data:-data/$corpus/train}
test_data=${test_data:-data/$corpus/test}
refine_conf=${refine_conf:-$pseudo_conf}
trials=${trials:-$test_data/trials}
exp=${exp:-exp/$corpus}
ssl_dir=$exp/ssl${ssl_tag:+_$ssl_tag}   # the SSL system (one exp dir per config: a second config never overwrites the first)
pl_tag=${pseudo_tag:+_$pseudo_tag}      # the pseudo-label systems' suffix, after the SSL one when they start from it
if [ -n "$ssl_tag" ] && loop_uses_ssl; then
  pl_tag=_$ssl_tag$pl_tag
fi
pl=$exp/pl${pl_tag}_iter                # + N: iteration N's system
clusterer=$exp/clusterer${pl_tag}_iter  # + N: with --cluster-model-conf, the model whose embeddings iteration N + 1 clusters
tforce=(--force $force)   # the option of the training and stage-0 entry points (true|false, as every step's)
ref=(); [ "$true_speakers" != true ] || ref=(--ref-utt2spk "$train_data/utt2spk")   # diagnostics only
baseline=$exp/$(basename "${baseline_conf:-none}" .yaml)   # the baseline's model dir
initial=; [ "$init_from_ssl" != true ] || initial=$ssl_dir   # where pseudo-label training starts
seed=$ssl_dir; [ "$init_embedder" != baseline ] || seed=$baseline   # its embeddings seed iteration 1

make_baseline() {  # (re)creates the baseline's model dir when new or when its config changed
  if ! cmp -s "$baseline_conf" $baseline/config.yaml; then
    rm -rf $baseline && mkdir -p $baseline && cp "$baseline_conf" $baseline/config.yaml
  fi
}
fresh() {  # <output> <stamp.py options>: true when <output>'s stamp holds these inputs and options (not with --force)
  local out=$1; shift
  [ "$force" != true ] && stamp.py check "$@" "$out" > /dev/null
}
utt2dur() {  # <data dir>: its utt2dur, redone when wav.scp or segments change (one of before stamps: kept, stamped)
  local made=(--input "$1/wav.scp" --input "$1/segments")
  if ! fresh "$1/utt2dur" "${made[@]}" --adopt-unstamped true; then
    rm -f "$1/utt2dur.stamp"
    utils/compute_utt2dur.sh --nj $nj "$1"
    stamp.py write "${made[@]}" "$1/utt2dur"
  fi
}
import_init_embeddings() {  # --init-embeddings -> <exp>/init_embeddings/<train>/embeddings.scp (redone when they change)
  local emb=$exp/init_embeddings/$(basename "$train_data") made=(--input "$init_embeddings" --input "$train_data/utt2spk")
  if ! fresh $emb/embeddings.scp "${made[@]}"; then
    rm -f $emb/embeddings.scp.stamp
    import_embeddings.py "$init_embeddings" "$train_data" $emb
    stamp.py write "${made[@]}" $emb/embeddings.scp
  fi
}
cluster_iteration() {  # <iteration> <model dir whose embeddings of the training data are clustered>
  local emb=$2/embeddings/$(basename "$train_data") ahc=()
  [ "$ahc_clusters" -eq 0 ] || ahc+=(--ahc-clusters $ahc_clusters)
  if [ -n "$ahc_threshold" ] && [ $1 -eq 1 ]; then ahc+=(--ahc-threshold $ahc_threshold)
  elif [ -n "$ahc_threshold" ]; then   # each model's embeddings have their own distances: keep iteration 1's count
    ahc+=(--ahc-clusters-from ${pl}1/clusters/clusters.json)
  fi
  if [ $1 -eq 1 ] && [ -n "$init_embeddings" ]; then emb=$exp/init_embeddings/$(basename "$train_data"); import_init_embeddings
  else steps/extract_embeddings.sh --nj $nj --cmd "$cmd" --device $device --force $force $2 "$train_data" $emb; fi
  steps/cluster.sh --cmd "$cmd" --force $force --k $num_clusters --standardize $standardize "${ahc[@]}" \
    --normalize $cluster_normalize --spherical $kmeans_spherical --init $kmeans_init --niter $kmeans_iters \
    --ahc-linkage $ahc_linkage --min-cluster-size $min_cluster_size \
    "${ref[@]}" --report-dir ${pl}$1/clusters $emb/embeddings.scp "$train_data" ${pl}$1/data
}
train_iteration() {  # <iteration> [<model dir to start from>]
  local conf=$pseudo_conf; [ $1 -eq 1 ] || conf=$refine_conf
  steps/train.sh train_pseudo.py "${tforce[@]}" $pseudo_args --config $conf --data ${pl}$1/data \
    --exp-dir ${pl}$1 ${2:+--init $2} "${ref[@]}"
}
train_clusterer() {  # <iteration>: with --cluster-model-conf (and a next iteration), the model the next one clusters with
  [ -n "$cluster_model_conf" ] && [ $1 -lt $num_iters ] || return 0
  local st=4; [ $1 -eq 1 ] || st=5
  echo "Stage $st: the clustering model ($cluster_model_conf) on ${pl}$1's pseudo-labels -> ${clusterer}$1"
  steps/train.sh train_pseudo.py "${tforce[@]}" $pseudo_args --config $cluster_model_conf --data ${pl}$1/data \
    --exp-dir ${clusterer}$1 "${ref[@]}"
}
backend_labels() {  # <system dir>: sets backend_opts, the evaluate.sh options of its LDA/PLDA back-end (or none)
  backend_opts=(); [ "$plda" = true ] || return 0
  local last labels what
  last=$(ls -d ${pl}* 2> /dev/null | sort -V | tail -n 1)
  case $(basename $1) in   # never the true labels for a label-free system
    pl${pl_tag}_iter*) labels=$1/data/utt2spk; what="pseudo-labels of $(basename $1)";;
    oracle$pl_tag) labels=$train_data/utt2spk; what="true labels";;
    *) labels=${last:+$last/data/utt2spk}; what="pseudo-labels of $(basename "${last:-none}")";;
  esac
  if [ -n "$labels" ] && [ -f "$labels" ]; then
    backend_opts=(--plda-utt2spk "$labels" --plda-labels "$what" --lda-dim $lda_dim --lda-dim-dev "$lda_dim_dev")
  else
    echo "$0: no pseudo-labels for the LDA/PLDA back-end of $1 (no ${pl}*/data): no *_plda rows" >&2
  fi
}
cohort_data() {  # prints the stage-6 cohort: the training data, or a seeded random subset of it
  local n; n=$(wc -l < "$train_data/utt2spk")
  if [ "$cohort_size" -ge "$n" ]; then echo "$train_data"; return; fi
  local per=(); [ "$asnorm_cohort" != spk ] || per=(--per-spk)   # whole speakers for speaker-mean cohorts
  local made=(--option "subset=--random $cohort_size ${per[*]} --seed 0")
  for f in utt2spk wav.scp segments utt2dur utt2num_samples; do made+=(--input "$train_data/$f"); done
  if ! fresh data/$corpus/cohort "${made[@]}"; then
    rm -f data/$corpus/cohort.stamp
    utils/subset_data_dir.sh --random $cohort_size "${per[@]}" --seed 0 "$train_data" data/$corpus/cohort >&2
    stamp.py write "${made[@]}" data/$corpus/cohort
  fi
  echo data/$corpus/cohort
}

if [ $stage -le 0 ] && [ $stop_stage -ge 0 ]; then
  echo "Stage 0: data ($corpus)"
  prepare_data
fi

if [ $stage -le 1 ] && [ $stop_stage -ge 1 ]; then
  echo "Stage 1: lists"
  for d in "$train_data" "$test_data"; do
    utt2dur "$d"
    utils/validate_data_dir.sh "$d"
  done
  for t in "$trials" $extra_trials; do [ -f "$t" ] || { echo "$0: no trial list $t" >&2; exit 1; }; done
fi

if [ $stage -le 2 ] && [ $stop_stage -ge 2 ]; then
  if [ "$skip_ssl" = true ]; then
    echo "Stage 2: skipped (--skip-ssl true: the loop does not use the SSL encoder)"
  else
    echo "Stage 2: SSL pretraining ($ssl_conf) -> $ssl_dir"
    steps/train.sh train_ssl.py "${tforce[@]}" $ssl_args --config $ssl_conf --data "$train_data" --exp-dir $ssl_dir
  fi
fi

if [ $stage -le 3 ] && [ $stop_stage -ge 3 ]; then
  [ "$init_embedder" != baseline ] || [ -n "$init_embeddings" ] || make_baseline
  echo "Stage 3: clustering the training embeddings of ${init_embeddings:-$seed} -> ${pl}1/data"
  cluster_iteration 1 $seed
fi

if [ $stage -le 4 ] && [ $stop_stage -ge 4 ]; then
  echo "Stage 4: training on the pseudo-labels ($pseudo_conf) -> ${pl}1"
  train_iteration 1 $initial
  train_clusterer 1
  if [ "$oracle" = true ]; then
    echo "Stage 4: the same training on the true labels (supervised reference) -> $exp/oracle$pl_tag"
    steps/train.sh train_pseudo.py "${tforce[@]}" $pseudo_args --config $pseudo_conf --data "$train_data" \
      --exp-dir $exp/oracle$pl_tag \
      ${initial:+--init $initial}
  fi
fi

if [ $stage -le 5 ] && [ $stop_stage -ge 5 ]; then
  for it in $(seq 2 $num_iters); do
    embedder=${pl}$((it - 1)); [ -z "$cluster_model_conf" ] || embedder=${clusterer}$((it - 1))
    echo "Stage 5: iteration $it: clustering with $embedder, training ($refine_conf) -> ${pl}$it"
    cluster_iteration $it $embedder
    if [ "$retrain_from" = previous ]; then train_iteration $it ${pl}$((it - 1)); else train_iteration $it $initial; fi
    train_clusterer $it
  done
  if [ -n "$lmft_conf" ]; then
    last=${pl}$num_iters
    echo "Stage 5: large-margin fine-tuning ($lmft_conf) of $last on its pseudo-labels -> $exp/lmft$pl_tag"
    steps/train.sh train_pseudo.py "${tforce[@]}" $pseudo_args --config $lmft_conf --data $last/data \
      --exp-dir $exp/lmft$pl_tag \
      --init $last "${ref[@]}"
  fi
fi

if [ $stage -le 6 ] && [ $stop_stage -ge 6 ]; then
  echo "Stage 6: evaluation"
  if [ -n "$eval_systems" ]; then read -r -a systems <<< "$eval_systems"; else
    systems=()
    [ -z "$baseline_conf" ] || { make_baseline; systems+=($baseline); }
    if [ "$eval_untrained" = true ] && [ -f $ssl_dir/model.pt ]; then   # the SSL encoder's initial weights
      mkdir -p ${ssl_dir}_untrained
      cmp -s $ssl_dir/config.yaml ${ssl_dir}_untrained/config.yaml || cp $ssl_dir/config.yaml ${ssl_dir}_untrained/
      touch ${ssl_dir}_untrained/UNTRAINED   # no model.pt on purpose: load the initial weights (sslspk/extraction.py)
      systems+=(${ssl_dir}_untrained)
    fi
    for d in $ssl_dir $(ls -d ${clusterer}* ${pl}* 2> /dev/null | sort -V) $exp/lmft$pl_tag $exp/oracle$pl_tag; do
      [ ! -f $d/model.pt ] || systems+=($d)
    done
  fi
  [ ${#systems[@]} -gt 0 ] || { echo "$0: no system to evaluate in $exp" >&2; exit 1; }
  cohort=$(cohort_data)
  for sys in "${systems[@]}"; do
    backend_labels $sys
    steps/evaluate.sh "${backend_opts[@]}" --nj $nj --cmd "$cmd" --device $device --force $force --asnorm-cohort $asnorm_cohort --asnorm-top-n $asnorm_top_n \
      --cal-p-target $cal_p_target --extra-trials "$extra_trials" --max-seconds "$eval_max_seconds" \
      --segments $eval_segments --segment-seconds $eval_segment_seconds $sys "$cohort" "$test_data" "$trials"
  done
  rows=()
  for t in test $extra_trials; do   # DET curves of the AS-norm scores of every system, one plot per trial list
    name=$(basename $t)
    rows+=(--trials $name --trials ${name}_asnorm)
    [ "$eval_segments" -eq 0 ] || rows+=(--trials ${name}_seg)
    [ "$plda" != true ] || rows+=(--trials ${name}_plda --trials ${name}_lda)
    det=(); for s in "${systems[@]}"; do det+=("$(basename $s)=$s/scores/${name}_asnorm.score"); done
    plot_det.py --title "$name (AS-norm)" --out $exp/det_$name.png "${det[@]}"
  done
  [ "$plda" != true ] || [ -z "$lda_dim_dev" ] || rows+=(--trials test_plda_eval)
  compare_results.py "${rows[@]}" "${systems[@]}" > $exp/results.md
  if ls -d ${pl}* > /dev/null 2>&1; then
    loop_report.py --start $(basename $seed) --tag "$pl_tag" $exp > $exp/iterations.md && cat $exp/iterations.md
  fi
  cat $exp/results.md
fi
