# retinanet with EMOv2-2M, 1x (official: retinanet/retinanet_emo2_2M_fpn_1x_coco.py): the 1M recipe with another backbone
_base_ = './retinanet_emov2_1m_fpn_1x_coco.py'

model = dict(
    backbone=dict(model_name='emov2_2m', drop_path_rate=0.05, pretrained=True),
    neck=dict(in_channels=[32, 48, 120, 200]),
)
